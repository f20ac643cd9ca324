"""The deploy suite's own test host and source tree (used by tests/deploy and bench/deploy.py).

FabHost: a container made by tools/local_host.py's Instance under its own name
and ports (never `toxic-local`), provisioned with site.yml through an inventory
that copies inventory/local with this instance's name and SSH port; `fab` runs
against that inventory; the host's state is read with `docker exec`, not
through fab, so a test never trusts the tool it tests. `load()` runs
tools/loadgen.py inside it while an operation runs.

SourceRepo: a throw-away git repository holding a copy of app/, so a deploy
has a clean tree and a real commit whatever state the working tree is in,
and a test can make code changes, dirty trees and deliberately broken
variants without touching the repository.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tools.local_host import Instance, LocalHostError

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
LOADGEN = REPO / "tools" / "loadgen.py"
LOADGEN_IN_HOST = "/root/loadgen.py"
ROOT = "/srv/toxic-service"
# The load during every deploy and rollback: open loop (tools/loadgen.py constant), a new connection per request.
# 16 threads send on time through a 0.4 s stall; in a longer one requests wait in the generator, and their latency,
# counted from the time each was due, still shows it. More threads made the generator's own p99 worse (GIL: 64
# threads 234 ms, 16 threads 31 ms at 40 req/s in the same container at a load average of 6).
LOAD_RATE = 40.0
LOAD_THREADS = 16
TAIL_S = 1.0  # the load still runs this long after the operation ends
# Worst latency allowed during a deploy or rollback: LATENCY_FACTOR x the no-deploy p99, within [FLOOR, CAP].
# Measured in the test container, 40 req/s, `systemctl restart toxic-service` (what toxic-release does): worst
# ~0.8 s on a quiet machine (bench deploy, 10 runs); 1.5, 1.9, 1.9, 2.7, 2.8 s at a load average of 2-4 on 2 CPUs
# (no-deploy p99 12-18 ms); 3.1 s at ~6 (p99 31 ms); the service stopped (SIGSTOP) for 5 s: 5.0 s. A restart's
# queue depends on how fast a new master loads, far more than the p99 of a warm service does, so the floor sits
# just under the cap: every restart seen passes, and a 5 s stall fails however noisy the baseline was.
LATENCY_FACTOR = 150.0
LATENCY_FLOOR_MS = 4000.0
LATENCY_CAP_MS = 4500.0
# Above this p99 with no deploy running, the machine, not a deploy, sets the latency (seen: p99 8.6 s at a load
# average of 8 on 2 CPUs): nothing can be judged, and the suite says so instead of passing or failing on noise.
BASELINE_P99_MAX_MS = 500.0
# Measured figures of the session (deploy/rollback seconds, failed requests), written to .cache/fab-test/figures.json.
FIGURES: dict[str, dict] = {}


def record(name: str, **figures) -> None:
    FIGURES[name] = figures


class HostError(AssertionError):
    """The test host could not be made or reached; the message says which step and shows its output."""


def tool_env() -> dict[str, str]:
    """What `make` exports: the venv on PATH, Ansible's state under .cache/."""
    cache = REPO / ".cache"
    return dict(
        os.environ,
        PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        ANSIBLE_HOME=str(cache / "ansible" / "home"),
        ANSIBLE_LOCAL_TEMP=str(cache / "ansible" / "tmp"),
        ANSIBLE_NOCOLOR="1",
        PYTHONUNBUFFERED="1",
    )


def run(cmd: list[str], timeout: float, what: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=tool_env(), **kwargs)
    except subprocess.TimeoutExpired as exc:
        raise HostError(f"{what}: no result within {timeout:.0f} s") from exc
    if check and result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise HostError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result


@dataclass
class FabResult:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class FabHost:
    name: str = "toxic-fab"
    http_port: int = 18080
    https_port: int = 18443
    ssh_port: int = 12222
    work: Path = field(default_factory=lambda: REPO / ".cache" / "fab-test")

    @property
    def inventory(self) -> Path:
        return self.work / f"inventory-{self.name}"

    # ------------------------------------------------------------------ lifecycle

    @property
    def instance(self) -> Instance:
        return Instance(self.name, self.http_port, self.https_port, self.ssh_port)

    def up(self) -> None:
        try:
            self.instance.up()
        except (LocalHostError, subprocess.TimeoutExpired) as exc:
            raise HostError(f"starting the test host {self.name} failed: {exc}") from None

    def down(self) -> None:
        try:
            self.instance.down()
        except (LocalHostError, subprocess.TimeoutExpired) as exc:
            raise HostError(f"removing the test host {self.name} failed: {exc}") from None

    def write_inventory(self) -> Path:
        """inventory/local with this instance's host name and SSH port (everything else as is)."""
        source = REPO / "inventory" / "local"
        shutil.rmtree(self.inventory, ignore_errors=True)
        shutil.copytree(source, self.inventory)
        hosts = self.inventory / "hosts.yml"
        text = hosts.read_text().replace("toxic-local:", f"{self.name}:")
        text, count = re.subn(r"(?m)^(\s*ansible_port:).*$", rf"\g<1> {self.ssh_port}", text)
        if count != 1:
            raise HostError(f"{source}/hosts.yml: expected one ansible_port line, found {count}")
        hosts.write_text(text)
        group_vars = self.inventory / "group_vars" / "all.yml"
        # The copy lives elsewhere: the repository root can no longer be derived from the inventory's path.
        text, count = re.subn(r"(?m)^toxic_local_root:.*$", f'toxic_local_root: "{REPO}"', group_vars.read_text())
        if count != 1:
            raise HostError(f"{source}/group_vars/all.yml: expected one toxic_local_root line, found {count}")
        group_vars.write_text(text)
        return self.inventory

    def provision(self) -> float:
        self.write_inventory()
        log = self.work / f"provision-{self.name}.log"
        started = time.monotonic()
        result = run([str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory), "site.yml"], 1200,
                     f"ansible-playbook site.yml on {self.name}", check=False, cwd=REPO)
        log.write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            tail = "\n".join(result.stdout.strip().splitlines()[-30:])
            raise HostError(f"provisioning {self.name} failed (exit {result.returncode}; full log {log}):\n{tail}")
        self.install_loadgen()
        return time.monotonic() - started

    def install_loadgen(self) -> None:
        self.docker_cp(LOADGEN, LOADGEN_IN_HOST)

    # ------------------------------------------------------------------ looking at the host

    def exec(self, *cmd: str, timeout: float = 60, check: bool = True) -> str:
        return run(["docker", "exec", self.name, *cmd], timeout, f"docker exec {self.name} {' '.join(cmd)}", check=check).stdout

    def exec_as(self, user: str, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`cmd` run in the host as `user` (docker exec -u), whatever its exit status: for what a user may do."""
        return run(["docker", "exec", "-u", user, self.name, *cmd], timeout, f"docker exec -u {user} {' '.join(cmd)}",
                   check=False)

    def docker_cp(self, src: Path, dest: str) -> None:
        run(["docker", "cp", str(src), f"{self.name}:{dest}"], 60, f"docker cp {src}")

    def snapshot(self) -> dict:
        """The release layout as the host has it: what a refused deploy must leave exactly as it was."""
        script = (
            f"readlink {ROOT}/current; echo; ls -1 {ROOT}/releases; echo --; ls -1 {ROOT}/shared/models 2>/dev/null; echo --;"
            f" cat {ROOT}/current/REVISION; echo --; readlink -f {ROOT}/current/model"
        )
        current, rest = self.exec("sh", "-c", script).split("\n", 1)
        releases, models, revision, model = rest.split("--\n")
        return {
            "current": Path(current.strip()).name,
            "releases": releases.split(),
            "models": models.split(),
            "revision": revision.strip(),
            "model": model.strip(),
        }

    def release_record(self, name: str) -> dict:
        return json.loads(self.exec("cat", f"{ROOT}/releases/{name}/RELEASE.json"))

    def score_via_nginx(self) -> dict:
        body = json.dumps({"sequence": "you are a stupid idiot"})
        out = self.exec("python3", "-c", (
            "import http.client,sys; c=http.client.HTTPConnection('127.0.0.1', 80, timeout=30);"
            f"c.request('POST','/detect-toxic',body={body!r},headers={{'Content-Type':'application/json','Host':'localhost'}});"
            "r=c.getresponse(); sys.stdout.write(str(r.status)+' '+r.read().decode())"))
        status, payload = out.split(" ", 1)
        return {"status": int(status), "body": json.loads(payload)}

    # ------------------------------------------------------------------ acting on it

    def fab(self, *args: str, timeout: float = 900, inventory: Path | None = None, hosts: str | None = None) -> FabResult:
        """`fab TASK ...` against this host (through its inventory, or `-H` when hosts is given)."""
        task, rest = args[0], list(args[1:])
        cmd = [str(VENV_BIN / "fab"), "-r", str(REPO)]
        if hosts:
            cmd += ["-H", hosts, task, *rest]
        else:
            cmd += [task, "--inventory", str(inventory or self.inventory), *rest]
        started = time.monotonic()
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=tool_env(), cwd=REPO,
                                    stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired as exc:
            raise HostError(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s") from exc
        return FabResult(result.returncode, result.stdout, result.stderr, time.monotonic() - started)

    @contextlib.contextmanager
    def load(self, rate: float = LOAD_RATE, max_seconds: float = 600.0, ready_timeout: float = 30.0) -> Iterator[dict]:
        """A constant request load through nginx, made inside the container by tools/loadgen.py.

        The block runs only once the generator has had its first successful request (bounded by
        ready_timeout: HostError, with what the generator said, if it never gets one); the load goes on for
        TAIL_S after the block, then stops. The dict yielded is filled with the generator's result then.
        """
        stop = "/root/fab-loadgen.stop"  # inside the container
        self.exec("rm", "-f", stop)
        proc = subprocess.Popen(
            ["docker", "exec", self.name, "python3", LOADGEN_IN_HOST, "--connection", "close", "--timeout", "30",
             "constant", "--rate", str(rate), "--duration", str(max_seconds), "--threads", str(LOAD_THREADS),
             "--stop-file", stop],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.append(line)
                if _json_line(line).get("event") == "ready":
                    ready.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        result: dict = {}

        def finish() -> None:
            with contextlib.suppress(HostError):
                self.exec("touch", stop)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()  # our own `docker exec` client, by its handle
                proc.wait(timeout=10)
            reader.join(timeout=10)

        waited = time.monotonic()
        while not ready.wait(0.1):
            if proc.poll() is not None or time.monotonic() - waited > ready_timeout:
                finish()
                raise HostError(f"the load generator in {self.name} had no successful request within "
                                f"{ready_timeout:.0f} s: {''.join(lines)[-1500:]}")
        result["ready_after_s"] = round(time.monotonic() - waited, 2)
        try:
            yield result
        finally:
            time.sleep(TAIL_S)
            finish()
            final = [doc for doc in map(_json_line, lines) if doc and "event" not in doc]
            if final:
                result.update(final[-1])
            else:
                result["error"] = f"no result from the load generator: {''.join(lines)[-500:]}"


def _json_line(line: str) -> dict:
    try:
        doc = json.loads(line)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def latency_limit_ms(baseline_p99_ms: float) -> float:
    """The worst latency a deploy or rollback may cause: LATENCY_FACTOR x the no-deploy p99, within [floor, cap].

    A restart queues requests on systemd's socket for as long as a new master takes to load, which grows with
    how busy the machine is, as the p99 does; the floor and the cap are explained where they are set.
    """
    return min(LATENCY_CAP_MS, max(LATENCY_FLOOR_MS, LATENCY_FACTOR * baseline_p99_ms))


def latency_verdict(load: dict, baseline: dict) -> tuple[bool, str]:
    """(within the limit?, both figures in words) for one load run against the no-deploy baseline run."""
    limit = latency_limit_ms(baseline["p99_ms"])
    text = (f"worst latency {load['max_ms']:.0f} ms, limit {limit:.0f} ms ({LATENCY_FACTOR:g} x the no-deploy p99 of "
            f"{baseline['p99_ms']:.1f} ms = {LATENCY_FACTOR * baseline['p99_ms']:.0f} ms, held within "
            f"[{LATENCY_FLOOR_MS:.0f}, {LATENCY_CAP_MS:.0f}] ms)")
    return load["max_ms"] <= limit, text


class SourceRepo:
    """A git repository holding a copy of app/: real commits to deploy, whatever the working tree holds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.app = path / "app"

    @classmethod
    def create(cls, path: Path) -> SourceRepo:
        repo = cls(path)
        listed = run(["git", "-C", str(REPO), "ls-files", "-z", "app"], 60, "git ls-files app").stdout.split("\0")
        for rel in filter(None, listed):
            src = REPO / rel
            if src.is_file():
                (path / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, path / rel)
        (path / ".gitignore").write_text((REPO / ".gitignore").read_text())
        repo.git("init", "-q", "-b", "main")
        repo.commit("app as in the working tree")
        return repo

    def git(self, *args: str) -> str:
        return run(["git", "-C", str(self.path), "-c", "user.name=fab test", "-c", "user.email=fab-test@localhost", *args],
                   60, f"git {args[0]}").stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def code_change(self, label: str) -> str:
        """A real, harmless code change (a module gains a line), committed: what a code-only deploy ships."""
        init = self.app / "src" / "toxic_service" / "__init__.py"
        init.write_text(init.read_text() + f"# deploy test change: {label}\n")
        return self.commit(f"code change {label}")

    def patch(self, rel: str, old: str, new: str) -> None:
        path = self.app / rel
        text = path.read_text()
        if text.count(old) != 1:
            raise HostError(f"{rel}: the text to patch is not there exactly once; the deliberately broken variant needs updating")
        path.write_text(text.replace(old, new))

    def set_version(self, suffix: str) -> None:
        # The one place the version lives (pyproject.toml reads it from there).
        self.patch("src/toxic_service/__init__.py", '__version__ = "0.1.0"', f'__version__ = "0.1.0+{suffix}"')

    def variant(self, path: Path, kind: str) -> SourceRepo:
        """A copy of this repository with a deliberately broken app, committed (version 0.1.0+<kind>)."""
        shutil.copytree(self.path, path)
        other = SourceRepo(path)
        other.set_version(kind.replace("-", "."))
        if kind == "broken-check":  # `toxic-service check` exits non-zero: must never be activated
            other.patch("src/toxic_service/commands/check.py", "    settings = load_bundle_settings(bundle, sqlite_path)\n",
                        '    raise click.ClickException("deliberately broken release (deploy test): check fails")\n')
        elif kind == "unready":  # check passes, but the running service answers /readyz with 503
            other.patch("src/toxic_service/api/routes.py", "def readyz() -> Response:\n",
                        "def readyz() -> Response:\n    from toxic_service.errors import NotReady\n\n"
                        '    raise NotReady("deliberately unready release (deploy test)")\n')
        else:
            raise ValueError(kind)
        other.commit(f"deliberately broken: {kind}")
        return other
