"""Ship toxic-service updates to hosts provisioned by site.yml (Fabric 3).

    fab deploy [--allow-dirty] [--force] [--keep N]       the app wheel built from this working tree
    fab deploy-model --model FILE.h5|FILE.keras [--vocab FILE] [--tokenizer FILE]
                                                          a new model (converted here), as a deploy
    fab rollback [--release NAME]                         the previous release, or the named one
    fab status [--json]                                   current release, REVISION, health, RSS, deploys
    fab logs [--follow] [--lines N]                       the service's journal

Hosts come from the Ansible inventory (--inventory, default $TOXIC_INVENTORY or
inventory/local; group `app`, --host NAME for one of them), with the
inventory's address, port, SSH key and known_hosts file; `fab -H
user@host:port TASK` overrides it. fab logs in as the inventory's
toxic_deploy_user, never as the admin user Ansible uses: that user's sudo runs
toxic-release's subcommands and nothing else (roles/base), so a stolen deploy
key ships releases but gets no root shell. A host key must already be known (the
inventory's UserKnownHostsFile, else ~/.ssh/known_hosts, and
/etc/ssh/ssh_known_hosts): an unknown one is refused, never added
(docs/provisioning.md, "First contact"). Every step on a host is one call to
`sudo toxic-release ...`, the tool the toxic_service role installs and uses:
activation, the switch back on failure and rollback exist once, there.
This file only builds, uploads and orchestrates.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Connection, task
from invoke.exceptions import Exit
from packaging.requirements import Requirement
from toxic_service.bundle import sha256_file
from toxic_service.errors import VocabularyError
from toxic_service.vocab.meta import read_meta

REPO = Path(__file__).resolve().parent
TOOL = "/usr/local/sbin/toxic-release"
DEFAULT_INVENTORY = REPO / "inventory" / "local"
DEFAULT_WHEELHOUSE = REPO / ".cache" / "wheelhouse"
APP_WHEEL_PREFIX = "toxic_service-"
# The deploy user's own upload area on the host. toxic-release reads it as root without following a
# symlink, copies what SHA256SUMS lists into a root-owned directory and installs only what matches.
STAGING = ".toxic-deploy"
MANIFEST = "SHA256SUMS"
# Rendered per host by Ansible itself, so templated inventory values ({{ ... }}) resolve as in a playbook.
CONNECTION_VARS = (
    '{{ {"host": ansible_host | default(inventory_hostname), "port": ansible_port | default(22) | int,'
    ' "user": toxic_deploy_user | default(""),'
    ' "key": toxic_deploy_ssh_private_key_file | default(ansible_ssh_private_key_file | default("")),'
    ' "ssh_args": ansible_ssh_common_args | default("")} }}'
)

COMMON_HELP = {
    "inventory": "Ansible inventory (default: $TOXIC_INVENTORY or inventory/local)",
    "group": "inventory group to act on (default: app)",
    "host": "only this inventory host",
}


def say(message: str) -> None:
    print(f"fab: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- hosts


@dataclass
class Target:
    name: str
    conn: Connection
    known_hosts: tuple[Path, ...] = ()  # the files its host key was looked up in (for the refusal message)


def _ansible_tool(name: str) -> str:
    # The venv fab runs from holds Ansible; fall back to PATH.
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise Exit(f"fab: {name} not found (install Ansible: make venv)")
    return found


def _ansible(args: list[str], what: str, extra_env: dict[str, str] | None = None) -> str:
    env = dict(os.environ, ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_NOCOLOR="1", **(extra_env or {}))
    try:
        result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120, check=False)
    except subprocess.TimeoutExpired as exc:
        raise Exit(f"fab: {what} took over 120 s") from exc
    if result.returncode != 0:
        tail = "\n  ".join((result.stderr or result.stdout).strip().splitlines()[-6:])
        raise Exit(f"fab: {what} failed (exit {result.returncode}):\n  {tail}")
    return result.stdout


def _group_hosts(data: dict, group: str, seen: set[str] | None = None) -> list[str]:
    seen = seen if seen is not None else set()
    if group in seen:
        return []
    seen.add(group)
    entry = data.get(group) or {}
    hosts = list(entry.get("hosts", []))
    for child in entry.get("children", []):
        hosts += [h for h in _group_hosts(data, child, seen) if h not in hosts]
    return hosts


def inventory_hosts(inventory: str | None, group: str, host: str | None) -> list[dict]:
    """Hosts of `group` (or just `host`) with their connection settings, as Ansible would use them.

    Ansible renders them itself (an ad-hoc `debug`, which connects nowhere): inventory values may be
    templates ({{ ... }}), which `ansible-inventory --list` prints unrendered. `ansible-inventory --list`
    is asked only to name the groups and hosts there are when the requested ones are not.
    """
    path = Path(inventory or os.environ.get("TOXIC_INVENTORY") or DEFAULT_INVENTORY)
    if not path.exists():
        raise Exit(f"fab: inventory {path} does not exist (--inventory or TOXIC_INVENTORY)")
    pattern = host if host is not None else group
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", pattern):
        raise Exit(f"fab: {'--host' if host else '--group'} {pattern!r}: expected one inventory host or group name")
    output = _ansible(
        [_ansible_tool("ansible"), "-i", str(path), pattern, "-m", "ansible.builtin.debug", "-a", f"msg={CONNECTION_VARS}"],
        f"reading the inventory {path}",
        {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"},
    )
    plays = json.loads(output).get("plays") or [{}]
    results = (plays[0].get("tasks") or [{}])[0].get("hosts", {})
    data = json.loads(_ansible([_ansible_tool("ansible-inventory"), "-i", str(path), "--list"], f"listing {path}")) if (
        not results or host is not None
    ) else {}
    if host is not None:
        members = _group_hosts(data, group)
        if host not in members or host not in results:
            raise Exit(f"fab: unknown host {host!r}: not in group {group!r} of {path} (hosts: {', '.join(members) or 'none'})")
    elif not results:
        groups = sorted(k for k in data if k != "_meta")
        if group not in data:
            raise Exit(f"fab: inventory {path} has no group {group!r} (groups: {', '.join(groups)})")
        raise Exit(f"fab: group {group!r} of {path} has no hosts")
    hosts = []
    for name, result in sorted(results.items()):
        if result.get("failed") or not isinstance(result.get("msg"), dict):
            raise Exit(f"fab: {name}: cannot render its connection settings: {result.get('msg')}")
        hosts.append({"name": name, **result["msg"]})
    return hosts


def _ssh_options(args: str) -> dict[str, str]:
    """`-o Key=Value` pairs of ansible_ssh_common_args (the ones paramiko can honour are used)."""
    options, words = {}, shlex.split(args or "")
    for i, word in enumerate(words):
        value = words[i + 1] if word == "-o" and i + 1 < len(words) else word[2:] if word.startswith("-o") else None
        if value and "=" in value:
            key, val = value.split("=", 1)
            options[key.strip().lower()] = val.strip()
    return options


# OpenSSH's defaults; an inventory's UserKnownHostsFile/GlobalKnownHostsFile replaces them, as it does for ssh
# (so a stale ~/.ssh/known_hosts line for a reused loopback port cannot clash with the file the inventory names).
USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")


class UnknownHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(f"{hostname}: no {key.get_name()} host key in the known_hosts files")
        self.hostname, self.key = hostname, key


class RefuseUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """paramiko's RejectPolicy, raising with the key, so the refusal can name its fingerprint."""

    def missing_host_key(self, client, hostname, key):
        raise UnknownHostKey(hostname, key)


def known_hosts_files(ssh_args: str) -> list[Path]:
    """The known_hosts files ssh itself would read for these ansible_ssh_common_args."""
    options = _ssh_options(ssh_args)
    files = []
    for option, defaults in (("userknownhostsfile", USER_KNOWN_HOSTS), ("globalknownhostsfile", GLOBAL_KNOWN_HOSTS)):
        files += [Path(f).expanduser() for f in (options[option].split() if option in options else defaults)]
    return files


def check_host_keys(conn: Connection, ssh_args: str = "") -> tuple[Path, ...]:
    """Trust only host keys already in a known_hosts file: Fabric's default policy (AutoAddPolicy) takes any.

    Whatever StrictHostKeyChecking the inventory asks Ansible for, fab does not connect to a host whose key it
    has never seen: it would hand that host a signature made with the deploy key and then the release to run.
    Returns the files read.
    """
    files = known_hosts_files(ssh_args)
    for path in files:
        if not path.is_file():
            continue
        try:  # loaded as "system" keys: paramiko never writes them back
            conn.client.load_system_host_keys(str(path))
        except OSError as exc:
            raise Exit(f"fab: cannot read the known_hosts file {path}: {exc.strerror or exc}") from exc
    conn.client.set_missing_host_key_policy(RefuseUnknownHostKey())
    return tuple(files)


def connection_for(host: dict) -> Target:
    if not host["user"]:
        raise Exit(
            f"fab: {host['name']}: the inventory names no toxic_deploy_user: fab logs in as the deploy user "
            "(sudo for toxic-release only), not as the admin user; set toxic_deploy_user and toxic_deploy_keys, "
            "then run site.yml once (docs/provisioning.md)"
        )
    key = host["key"]
    if key and not Path(key).expanduser().is_file():
        raise Exit(
            f"fab: {host['name']}: no SSH key: {key} (ansible_ssh_private_key_file) does not exist. "
            "For the local host, `tools/local_host.py up` makes it."
        )
    connect_kwargs: dict = {}
    if key:  # only the inventory's key, as ssh -i would: no agent, no ~/.ssh guesses
        connect_kwargs = {"key_filename": [str(Path(key).expanduser())], "look_for_keys": False, "allow_agent": False}
    conn = Connection(host["host"], user=host["user"] or None, port=int(host["port"]), connect_timeout=15,
                      connect_kwargs=connect_kwargs)
    return Target(host["name"], conn, check_host_keys(conn, host["ssh_args"]))


def targets_for(c, inventory: str | None, group: str, host: str | None) -> list[Target]:
    if isinstance(c, Connection):  # fab -H: Fabric made the connection from the command line
        return [Target(c.original_host, c, check_host_keys(c))]
    return [connection_for(h) for h in inventory_hosts(inventory, group, host)]


def _host_key_refusal(t: Target, exc: paramiko.SSHException) -> str:
    host, port = t.conn.host, int(t.conn.port)
    name = host if port == 22 else f"[{host}]:{port}"  # how known_hosts spells it
    files = ", ".join(str(f) for f in t.known_hosts if f.is_file()) or "none exists: " + ", ".join(map(str, t.known_hosts))
    target = t.known_hosts[0] if t.known_hosts else "~/.ssh/known_hosts"
    if isinstance(exc, UnknownHostKey):
        return (
            f"fab: {t.name}: refusing to connect to {host}:{port}: its host key ({exc.key.get_name()} "
            f"{exc.key.fingerprint}) is in none of the known_hosts files read ({files}). Compare that fingerprint "
            f"with the one the host's console (or provider) shows, then add the key: "
            f"`ssh-keyscan{'' if port == 22 else f' -p {port}'} {host} >> {target}` "
            '(docs/provisioning.md, "First contact").'
        )
    return (
        f"fab: {t.name}: refusing to connect to {host}:{port}: its host key ({exc.key.get_name()} "
        f"{exc.key.fingerprint}) is not the one known for {name} ({exc.expected_key.get_name()} "
        f"{exc.expected_key.fingerprint}, in {files}): the connection may be intercepted. If the host was rebuilt, "
        f"remove the old key (`ssh-keygen -R '{name}' -f FILE`) and add the new one after checking it."
    )


def open_target(t: Target) -> None:
    where = f"{t.conn.user}@{t.conn.host}:{t.conn.port}"
    try:
        t.conn.open()
    except socket.gaierror as exc:
        raise Exit(f"fab: {t.name}: unknown host: cannot resolve {t.conn.host!r} ({exc.strerror})") from exc
    except paramiko.ssh_exception.NoValidConnectionsError as exc:
        raise Exit(f"fab: {t.name}: cannot connect to {where}: {exc.strerror or exc} (is the host up?)") from exc
    except (UnknownHostKey, paramiko.BadHostKeyException) as exc:
        raise Exit(_host_key_refusal(t, exc)) from exc
    except paramiko.AuthenticationException as exc:
        raise Exit(f"fab: {t.name}: {where} refused our SSH key ({exc}); is it in the user's authorized_keys?") from exc
    except paramiko.SSHException as exc:
        raise Exit(f"fab: {t.name}: SSH to {where} failed: {exc} (host key not in the known_hosts file?)") from exc
    except OSError as exc:  # timeouts, unreachable networks, unreadable key files
        raise Exit(f"fab: {t.name}: cannot connect to {where}: {exc}") from exc


def sudo_tool(*args: str) -> str:
    """The command line for `sudo toxic-release ARGS`: the tool by its absolute path, as sudoers names it."""
    return "sudo -n " + " ".join(shlex.quote(a) for a in (TOOL, *args))


def release_tool(t: Target, *args: str, capture: bool = True, what: str | None = None):
    """`sudo toxic-release ARGS` on the host: its progress (stderr) streams here; stdout is returned."""
    result = t.conn.run(sudo_tool(*args), hide="out" if capture else None, warn=True, in_stream=False)
    if result.failed:
        errors = [line.split("error: ", 1)[1] for line in result.stderr.splitlines() if "toxic-release: error: " in line]
        detail = errors[-1] if errors else (result.stderr.strip().splitlines() or ["no output"])[-1]
        if result.exited == 127 or "command not found" in result.stderr:
            detail = f"{TOOL} is not installed: provision the host first (ansible-playbook site.yml)"
        raise Exit(f"fab: {t.name}: {what or 'toxic-release ' + args[0]} failed: {detail}")
    return result.stdout


def remote_status(t: Target) -> dict:
    return json.loads(release_tool(t, "status", "--json"))


# --------------------------------------------------------------------------- building (on this machine)


def git(app_dir: Path, *args: str) -> str | None:
    result = subprocess.run(["git", "-C", str(app_dir), *args], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def source_revision(app_dir: Path, allow_dirty: bool) -> str:
    """The git commit the app is built from; refuses uncommitted changes under app_dir unless allowed."""
    head = git(app_dir, "rev-parse", "HEAD")
    if head is None:
        if not allow_dirty:
            raise Exit(
                f"fab: {app_dir} is not in a git work tree with a commit: no revision to record (--allow-dirty to deploy anyway)"
            )
        return "unversioned"
    changes = git(app_dir, "status", "--porcelain", "--untracked-files=all", "--", ".") or ""
    if changes:
        if not allow_dirty:
            listed = "\n  ".join(changes.splitlines()[:10])
            raise Exit(
                f"fab: refusing to deploy a dirty tree: {app_dir} has uncommitted changes:\n  {listed}\n"
                "Commit them, or pass --allow-dirty (REVISION then says <sha>-dirty)."
            )
        return head + "-dirty"
    return head


def build_app_wheel(app_dir: Path, out: Path, revision: str) -> Path:
    """The app wheel, built from a copy of app_dir (the tree gets no build/ or egg-info)."""
    if not (app_dir / "pyproject.toml").is_file():
        raise Exit(f"fab: {app_dir} has no pyproject.toml: not the app's source (--app)")
    source = out / "src"
    shutil.copytree(app_dir, source, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".*"))
    env = dict(os.environ)
    stamp = git(app_dir, "log", "-1", "--format=%ct")
    if stamp and not revision.endswith("-dirty"):
        env["SOURCE_DATE_EPOCH"] = stamp  # the same commit gives the same wheel, so a re-deploy is recognised
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--disable-pip-version-check",
         "--wheel-dir", str(out), str(source)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    wheels = sorted(out.glob(APP_WHEEL_PREFIX + "*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        tail = "\n  ".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise Exit(f"fab: building the app wheel from {app_dir} failed:\n  {tail}")
    return wheels[0]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def wheelhouse_python(wheels: dict[str, Path]) -> str | None:
    """"3.11" from the wheelhouse's CPython-specific wheels (cp311), or None when all are pure Python."""
    tags = {m.group(1) for name in wheels if (m := re.search(r"-cp3(\d+)-cp3\1[dmu]?-", name))}
    return f"3.{tags.pop()}" if len(tags) == 1 else None


def release_wheels(app_wheel: Path, wheelhouse: Path) -> dict[str, Path]:
    """What the host's wheelhouse must hold: this app wheel and the dependency wheels (tools/build_wheelhouse.sh)."""
    if not wheelhouse.is_dir():
        raise Exit(f"fab: no wheelhouse at {wheelhouse}: build it with `make wheelhouse` (tools/build_wheelhouse.sh)")
    deps = {p.name: p for p in sorted(wheelhouse.glob("*.whl")) if not p.name.startswith(APP_WHEEL_PREFIX)}
    have = {_normal(name.split("-", 1)[0]) for name in deps}
    with zipfile.ZipFile(app_wheel) as wheel:
        meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        lines = wheel.read(meta).decode().splitlines()
    requires = [Requirement(line.split(":", 1)[1].strip()) for line in lines if line.startswith("Requires-Dist:")]
    # Markers are judged for the Python the wheelhouse was built for (its cpXY tags), without extras:
    # `tomli; python_version < "3.11"` is not needed by a 3.11 host, and `pip download` left it out.
    target = wheelhouse_python(deps)
    environment = {"extra": ""} | ({"python_version": target, "python_full_version": target + ".0"} if target else {})
    needed = {_normal(r.name) for r in requires if r.marker is None or r.marker.evaluate(environment)}
    missing = sorted(needed - have)
    if missing:
        raise Exit(f"fab: the app needs {', '.join(missing)}, which {wheelhouse} lacks: rebuild it (tools/build_wheelhouse.sh)")
    return {**deps, app_wheel.name: app_wheel}


# The SQLite file format's own header: the other --vocab formats (dumps, Keras tokenizers) lack it.
SQLITE_MAGIC = b"SQLite format 3\x00"


def vocabulary_checksum(path: Path) -> str | None:
    """The checksum an SQLite vocabulary records about itself, read by the app's own reader
    (`vocab info` uses the same); None for the other --vocab formats, whose checksum
    `model import` computes. An SQLite file without its meta table is refused, by name."""
    with open(path, "rb") as handle:
        if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            return None
    try:
        return read_meta(path)["checksum"]
    except VocabularyError as exc:
        raise Exit(f"fab: --vocab {path}: {exc}") from exc


def import_model(model: Path, vocab: Path, tokenizer: Path | None, out: Path, options: dict[str, str | None]) -> Path:
    """`toxic-service model import` here on the controller (TensorFlow never runs on the host)."""
    cmd = [sys.executable, "-m", "toxic_service", "model", "import", str(model), "--vocab", str(vocab), "--out", str(out)]
    if tokenizer:
        cmd += ["--tokenizer", str(tokenizer)]
    for flag, value in options.items():
        if value:
            cmd += [f"--{flag}", value]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_USE_LEGACY_KERAS", None)
    if model.suffix == ".h5":
        env["TF_USE_LEGACY_KERAS"] = "1"  # an HDF5 model is a Keras 2 model: load it with tf-keras
    say(f"converting {model.name} here: toxic-service model import (TensorFlow; about a minute)")
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800, check=False)
    if result.returncode != 0:
        tail = "\n  ".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise Exit(f"fab: `toxic-service model import {model.name}` failed, nothing was deployed:\n  {tail}")
    return out


# --------------------------------------------------------------------------- uploading


def sync_wheelhouse(t: Target, wanted: dict[str, Path], root: str) -> tuple[str, int, int]:
    """Make the host's staging wheelhouse hold exactly `wanted`, sending only files it has nowhere yet."""
    made = t.conn.run(f"mkdir -p {STAGING}/wheelhouse && cd {STAGING}/wheelhouse && pwd", hide=True, in_stream=False)
    staging = made.stdout.strip()
    shared = f"{root}/shared/wheelhouse"
    listing = t.conn.run(
        f"find {shlex.quote(staging)} {shlex.quote(shared)} -maxdepth 1 -type f -name '*.whl' -exec sha256sum {{}} +"
        " 2>/dev/null || true",
        hide=True, in_stream=False,
    ).stdout
    on_host: dict[str, str] = {}  # sha256 -> a path holding it
    staged: dict[str, str] = {}  # name -> sha256
    for line in listing.splitlines():
        digest, path = line.split(maxsplit=1)
        on_host.setdefault(digest, path)
        if path.startswith(staging + "/"):
            staged[Path(path).name] = digest
    sent = sent_bytes = 0
    digests = {name: sha256_file(local) for name, local in wanted.items()}
    for name, local in sorted(wanted.items()):
        digest = digests[name]
        if staged.get(name) == digest:
            continue
        dest = f"{staging}/{name}"
        if digest in on_host:  # provisioning copied it already: a copy on the host beats an upload
            part = shlex.quote(dest + ".part")
            copy = f"cp {shlex.quote(on_host[digest])} {part} && mv -f {part} {shlex.quote(dest)}"
            t.conn.run(copy, hide=True, in_stream=False)
        else:
            t.conn.put(str(local), f"{dest}.part")
            t.conn.run(f"mv -f {shlex.quote(dest)}.part {shlex.quote(dest)}", hide=True, in_stream=False)
            sent, sent_bytes = sent + 1, sent_bytes + local.stat().st_size
    extra = sorted(set(staged) - set(wanted))
    if extra:
        t.conn.run("rm -f " + " ".join(shlex.quote(f"{staging}/{n}") for n in extra), hide=True, in_stream=False)
    # What toxic-release installs: these wheels, by sha256, and no other file of the upload directory.
    manifest = "".join(f"{digests[name]}  {name}\n" for name in sorted(wanted))
    t.conn.put(io.BytesIO(manifest.encode()), f"{staging}/{MANIFEST}")
    return staging, sent, sent_bytes


def upload_bundle(t: Target, bundle: Path) -> str:
    """The bundle's files into a fresh upload directory; `toxic-release add-model` copies them in place."""
    upload = t.conn.run(f"rm -rf {STAGING}/model && mkdir -p {STAGING}/model && cd {STAGING}/model && pwd",
                        hide=True, in_stream=False).stdout.strip()
    for path in sorted(bundle.iterdir()):
        if path.is_file():
            t.conn.put(str(path), f"{upload}/{path.name}")
    return release_tool(t, "add-model", "--from", upload, what="adding the model").strip()


# --------------------------------------------------------------------------- tasks


def _deploy(c, *, allow_dirty: bool, force: bool, keep: int, app: str | None, wheelhouse: str | None,
            health_timeout: float, inventory: str | None, group: str, host: str | None, model: dict | None = None) -> None:
    started = time.monotonic()
    if model is not None:  # every input is checked before anything is built or touched
        for flag in ("model", "vocab", "tokenizer", "samples"):
            if model.get(flag) and not Path(model[flag]).is_file():
                raise Exit(f"fab: --{flag} {model[flag]}: no such file; nothing was deployed")
        if Path(model["model"]).suffix not in (".h5", ".keras"):
            raise Exit(f"fab: --model {model['model']}: expected a Keras .h5 or .keras file")
    targets = targets_for(c, inventory, group, host)
    app_dir = Path(app).resolve() if app else REPO / "app"
    revision = source_revision(app_dir, allow_dirty)
    with tempfile.TemporaryDirectory(prefix="fab-deploy-") as tmp:
        work = Path(tmp)
        app_wheel = build_app_wheel(app_dir, work, revision)
        wanted = release_wheels(app_wheel, Path(wheelhouse).resolve() if wheelhouse else DEFAULT_WHEELHOUSE)
        say(f"built {app_wheel.name} (revision {revision[:12]}) in {time.monotonic() - started:.1f} s")
        bundles: dict[str, Path] = {}  # one conversion per vocabulary, however many hosts share it
        for t in targets:
            open_target(t)
            state = remote_status(t)
            model_dir = (state.get("model") or {}).get("path")  # a code deploy keeps the live model
            if model is not None:
                bundle = _model_for_host(t, state, model, work, bundles)
                model_dir = upload_bundle(t, bundle)
            staging, sent, sent_bytes = sync_wheelhouse(t, wanted, state["root"])
            say(f"{t.name}: wheelhouse in place ({sent} file(s), {sent_bytes / 1e6:.1f} MB sent)")
            if not force and model is None:
                fingerprint = json.loads(release_tool(t, "fingerprint", "--wheelhouse", staging))
                if not fingerprint["differs"]:
                    say(f"{t.name}: {fingerprint['current_release']} already runs this wheel and these dependencies; "
                        "nothing to do (--force makes a new release anyway)")
                    continue
            prepare = ["prepare", "--wheelhouse", staging, "--revision", revision]
            if model_dir:
                prepare += ["--model-dir", model_dir]
            release = Path(release_tool(t, *prepare, what="preparing the release").strip()).name
            activate = ["activate", release]
            if keep:
                activate += ["--keep", str(keep)]
            if health_timeout:
                activate += ["--health-timeout", str(health_timeout)]
            # check, atomic switch, restart, health check through nginx; switches back by itself on failure
            release_tool(t, *activate, what=f"activating {release}")
            say(f"{t.name}: {release} is live (revision {revision[:12]}), {time.monotonic() - started:.1f} s since start")


def _model_for_host(t: Target, state: dict, model: dict, work: Path, bundles: dict[str, Path]) -> Path:
    """A bundle converted against this host's vocabulary, refused here when the two do not belong together."""
    vocab_state = state.get("vocabulary") or {}
    host_checksum = vocab_state.get("checksum")
    vocab = Path(model["vocab"]) if model.get("vocab") else None
    if vocab is None:
        if vocab_state.get("backend") != "sqlite" or not host_checksum:
            raise Exit(f"fab: {t.name}: its vocabulary is not an SQLite file here ({vocab_state}); pass --vocab")
        vocab = work / f"host-vocab-{host_checksum[-12:]}.sqlite"
        if not vocab.exists():
            t.conn.get(vocab_state["path"], str(vocab))
    elif host_checksum and (local := vocabulary_checksum(vocab)) and local != host_checksum:
        raise Exit(_mismatch(t, vocab, local, host_checksum))
    key = f"{vocab}:{host_checksum}"
    if key not in bundles:
        options = {"labels": model.get("labels"), "source": model.get("source") or Path(model["model"]).name,
                   "licence": model.get("licence"), "samples": model.get("samples")}
        bundles[key] = import_model(Path(model["model"]), vocab, Path(model["tokenizer"]) if model.get("tokenizer") else None,
                                    work / f"bundle-{len(bundles)}", options)
    needs = json.loads((bundles[key] / "metadata.json").read_text())["vocabulary"]["checksum"]
    if host_checksum and needs != host_checksum:
        raise Exit(_mismatch(t, vocab, needs, host_checksum))
    return bundles[key]


def _mismatch(t: Target, vocab: Path, model_checksum: str, host_checksum: str) -> str:
    return (
        f"fab: {t.name}: refusing the model: it was built with vocabulary {model_checksum[:19]}… ({vocab.name}) "
        f"but the host serves vocabulary {host_checksum[:19]}…; nothing was deployed. "
        "Import the model with the host's vocabulary (omit --vocab), or ship the matching vocabulary first "
        "(ansible-playbook playbooks/embeddings.yml)."
    )


DEPLOY_HELP = {
    "allow-dirty": "deploy uncommitted changes under app/ (REVISION says <sha>-dirty)",
    "force": "make a new release even when the host already runs this exact wheel",
    "keep": "releases to keep on the host (default: the host's setting, 5)",
    "app": "the app's source directory (default: app/ of this repository)",
    "wheelhouse": "dependency wheels (default: .cache/wheelhouse, from tools/build_wheelhouse.sh)",
    "health-timeout": "seconds the new release gets to answer /readyz (default: the host's setting)",
    **COMMON_HELP,
}


@task(auto_shortflags=False, help=DEPLOY_HELP)
def deploy(c, allow_dirty=False, force=False, keep=0, app=None, wheelhouse=None, health_timeout=0.0,
           inventory=None, group="app", host=None):
    """Build the app wheel from this tree and make it the live release (switches back by itself on failure)."""
    _deploy(c, allow_dirty=allow_dirty, force=force, keep=int(keep), app=app, wheelhouse=wheelhouse,
            health_timeout=float(health_timeout), inventory=inventory, group=group, host=host)


@task(auto_shortflags=False, help={
    "model": "the Keras model (.h5 or .keras) to convert and deploy",
    "vocab": "the vocabulary it was trained with (default: the host's own vocabulary)",
    "tokenizer": "Keras tokenizer for lower/filters/num_words (toxic-service model import --tokenizer)",
    "samples": "comments, one per line, to verify the conversion on",
    "labels": "comma-separated output labels (default: the six Jigsaw labels)",
    "source": "where the model comes from (recorded in its metadata)",
    "licence": "the model's licence (recorded in its metadata)",
    **DEPLOY_HELP,
})
def deploy_model(c, model, vocab=None, tokenizer=None, samples=None, labels=None, source=None, licence=None,
                 allow_dirty=False, keep=0, app=None, wheelhouse=None, health_timeout=0.0, inventory=None, group="app",
                 host=None, force=False):
    """Convert a Keras model here, check it against the host's vocabulary, deploy it as a new release."""
    spec = {"model": model, "vocab": vocab, "tokenizer": tokenizer, "samples": samples, "labels": labels,
            "source": source, "licence": licence}
    _deploy(c, allow_dirty=allow_dirty, force=True, keep=int(keep), app=app, wheelhouse=wheelhouse,
            health_timeout=float(health_timeout), inventory=inventory, group=group, host=host, model=spec)


@task(auto_shortflags=False, help={"release": "release name to go back to (default: the one before the current)",
                                   "health-timeout": DEPLOY_HELP["health-timeout"], **COMMON_HELP})
def rollback(c, release=None, health_timeout=0.0, inventory=None, group="app", host=None):
    """Make the previous (or the named) release live again: the same check, switch and health check as a deploy."""
    for t in targets_for(c, inventory, group, host):
        started = time.monotonic()
        open_target(t)
        args = ["rollback", *([release] if release else [])]
        if float(health_timeout):
            args += ["--health-timeout", str(float(health_timeout))]
        release_tool(t, *args, what="rollback")  # toxic-release says which release is live now
        say(f"{t.name}: rolled back in {time.monotonic() - started:.1f} s")


@task(auto_shortflags=False, help={"json": "print toxic-release's JSON", **COMMON_HELP})
def status(c, json_=False, inventory=None, group="app", host=None):
    """Current release, REVISION, health, per-worker RSS and recent deploys of each host."""
    for t in targets_for(c, inventory, group, host):
        open_target(t)
        if json_:
            print(json.dumps({t.name: remote_status(t)}, indent=2))
        else:
            print(f"== {t.name}")
            print(release_tool(t, "status").rstrip())


@task(auto_shortflags=False, help={"follow": "keep printing new lines (Ctrl-C to stop)", "lines": "lines of history",
                                   **COMMON_HELP})
def logs(c, follow=False, lines=100, inventory=None, group="app", host=None):
    """The service's journal (gunicorn and the app) on each host."""
    for t in targets_for(c, inventory, group, host):
        open_target(t)
        # Through toxic-release: sudo lets the deploy user run it, not journalctl (whose other options root must not offer).
        command = sudo_tool("logs", "--lines", str(int(lines)), *(["--follow"] if follow else []))
        with contextlib.suppress(KeyboardInterrupt):
            t.conn.run(command, pty=follow, warn=True, in_stream=None if follow else False)
