"""The deploy suite's own test host and source tree (used by tests/deploy and bench/deploy.py).

FabHost: a container made by tools/local_host.py under its own name and ports
(never `toxic-local`), provisioned with site.yml through an inventory that
copies inventory/local with this instance's name and SSH port; `fab` runs
against that inventory; the host's state is read with `docker exec`, not
through fab, so a test never trusts the tool it tests.

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
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
LOADGEN = REPO / "tests" / "loadgen.py"
ROOT = "/srv/toxic-service"
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

    def local_host(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        launcher = [str(VENV_BIN / "python"), str(REPO / "tools" / "local_host.py")]
        ports = ["--name", self.name, "--http-port", str(self.http_port), "--https-port", str(self.https_port),
                 "--ssh-port", str(self.ssh_port)]
        return run([*launcher, *ports, command], timeout, f"tools/local_host.py --name {self.name} {command}", cwd=REPO)

    def up(self) -> None:
        self.local_host("up")
        state = run(["docker", "inspect", "--format", "{{.State.Running}}", self.name], 30, "docker inspect", check=False)
        if state.stdout.strip() != "true":
            raise HostError(f"tools/local_host.py up did not start a container named {self.name}")

    def down(self) -> None:
        self.local_host("down", timeout=120)

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
        self.docker_cp(LOADGEN, "/root/loadgen.py")
        return time.monotonic() - started

    # ------------------------------------------------------------------ looking at the host

    def exec(self, *cmd: str, timeout: float = 60, check: bool = True) -> str:
        return run(["docker", "exec", self.name, *cmd], timeout, f"docker exec {self.name} {' '.join(cmd)}", check=check).stdout

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
    def load(self, rate: float = 40.0, max_seconds: float = 600.0) -> Iterator[dict]:
        """A constant request load through nginx, generated inside the container (see tests/loadgen.py)."""
        stop = "/tmp/fab-loadgen.stop"
        self.exec("rm", "-f", stop)
        proc = subprocess.Popen(
            ["docker", "exec", self.name, "python3", "/root/loadgen.py", "--rate", str(rate), "--max-seconds",
             str(max_seconds), "--stop-file", stop, "--timeout", "30"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        result: dict = {}
        time.sleep(1.0)  # the load is running before the operation starts
        try:
            yield result
        finally:
            time.sleep(1.0)  # and still running after it ends
            with contextlib.suppress(HostError):
                self.exec("touch", stop)
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            try:
                result.update(json.loads(out.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                result.update({"error": f"no result from the load generator: {(out + err)[-500:]}"})


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
        self.patch("pyproject.toml", 'version = "0.1.0"', f'version = "0.1.0+{suffix}"')

    def variant(self, path: Path, kind: str) -> SourceRepo:
        """A copy of this repository with a deliberately broken app, committed (version 0.1.0+<kind>)."""
        shutil.copytree(self.path, path)
        other = SourceRepo(path)
        other.set_version(kind.replace("-", "."))
        if kind == "broken-check":  # `toxic-service check` exits non-zero: must never be activated
            other.patch("src/toxic_service/commands/check.py", "    settings = load_settings(**overrides)\n",
                        '    raise click.ClickException("deliberately broken release (deploy test): check fails")\n')
        elif kind == "unready":  # check passes, but the running service answers /readyz with 503
            other.patch("src/toxic_service/api/routes.py", "def readyz() -> Response:\n",
                        "def readyz() -> Response:\n    from toxic_service.errors import NotReady\n\n"
                        '    raise NotReady("deliberately unready release (deploy test)")\n')
        else:
            raise ValueError(kind)
        other.commit(f"deliberately broken: {kind}")
        return other
