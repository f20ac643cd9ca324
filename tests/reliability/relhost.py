"""The reliability suite's own test host: container `toxic-rel`, provisioned by site.yml.

Everything here talks to that one container: `docker exec` inside it, HTTP to
its loopback-published ports, SSH as the admin user. Every wait is bounded.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.local_host import Instance, LocalHostError  # noqa: E402

ARTIFACTS = REPO / "artifacts" / "reliability"
SSH_KEY = REPO / ".cache" / "ssh" / "id_ed25519"
KNOWN_HOSTS = REPO / ".cache" / "ssh" / "known_hosts"
# Copied into the host and run there with its python3 (nginx exempts loopback from its rate limit).
LOADGEN = REPO / "tools" / "loadgen.py"
LOADGEN_IN_HOST = "/root/reliability/loadgen.py"
# Written on the host after a successful site.yml run: what was provisioned.
MARKER = "/var/lib/toxic-reliability/provisioned"


class HostError(AssertionError):
    """The host did not reach the state a test waits for, within its bound."""


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RelHost:
    name: str = "toxic-rel"
    http_port: int = 28080
    https_port: int = 28443
    ssh_port: int = 22222
    admin_user: str = "deploy"
    log: list[str] = field(default_factory=list)

    # ------------------------------------------------------------ lifecycle

    @property
    def instance(self) -> Instance:
        return Instance(self.name, self.http_port, self.https_port, self.ssh_port)

    def up(self) -> None:
        try:
            self.instance.up()
        except (LocalHostError, subprocess.TimeoutExpired) as exc:
            raise HostError(f"starting the test host {self.name} (tools/local_host.py) failed: {exc}") from None

    def down(self) -> None:
        try:
            self.instance.down()
        except (LocalHostError, subprocess.TimeoutExpired) as exc:
            raise HostError(f"removing the test host {self.name} (tools/local_host.py) failed: {exc}") from None

    def probe_ports(self, ports: list[int]) -> dict[int, str]:
        """port -> open / closed / filtered, as a second container on the host's network sees it."""
        try:
            return {int(port): state for port, state in self.instance.probe_ports(ports).items()}
        except (LocalHostError, subprocess.TimeoutExpired) as exc:
            raise HostError(f"probing the ports of {self.name} failed: {exc}") from None

    def exists(self) -> bool:
        return subprocess.run(["docker", "inspect", self.name], capture_output=True, timeout=30, check=False).returncode == 0

    def inspect(self) -> dict:
        out = subprocess.run(["docker", "inspect", self.name], capture_output=True, text=True, timeout=30, check=True)
        return json.loads(out.stdout)[0]

    # ---------------------------------------------------------- inside it

    def exec(self, *cmd: str, timeout: float = 60, check: bool = True, user: str | None = None,
             stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        args = ["docker", "exec", "-i" if stdin is not None else "-t=false"]
        if user:
            args += ["--user", user]
        proc = subprocess.run([*args, self.name, *cmd], input=stdin.decode() if stdin is not None else None,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise HostError(f"`{' '.join(cmd)}` in {self.name} exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
        return proc

    def sh(self, script: str, timeout: float = 60, check: bool = True) -> str:
        return self.exec("sh", "-c", script, timeout=timeout, check=check).stdout.strip()

    def copy_in(self, src: Path, dest: str) -> None:
        subprocess.run(["docker", "cp", str(src), f"{self.name}:{dest}"], capture_output=True, timeout=60, check=True)

    def install_tools(self) -> None:
        """The script that runs inside the container: the load generator."""
        self.exec("mkdir", "-p", str(Path(LOADGEN_IN_HOST).parent))
        self.copy_in(LOADGEN, LOADGEN_IN_HOST)

    def main_pid(self) -> int:
        return int(self.exec("systemctl", "show", "-p", "MainPID", "--value", "toxic-service").stdout.strip() or 0)

    def worker_pids(self, master: int | None = None) -> list[int]:
        master = master or self.main_pid()
        if not master:
            return []
        out = self.exec("ps", "-o", "pid=", "--ppid", str(master), check=False).stdout
        return sorted(int(pid) for pid in out.split())

    def unit_property(self, unit: str, prop: str) -> str:
        return self.exec("systemctl", "show", "-p", prop, "--value", unit).stdout.strip()

    # ------------------------------------------------------------- from outside

    def http(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
             port: int | None = None, timeout: float = 10, chunked: bool = False) -> HttpAnswer:
        """One request to 127.0.0.1:<port> (default: the published HTTP port)."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.http_port, timeout=timeout)
        try:
            if chunked and body is not None:
                pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
                conn.request(method, path, body=iter(pieces), headers=headers or {}, encode_chunked=True)
            else:
                conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return HttpAnswer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            conn.close()

    def ready(self, port: int | None = None) -> bool:
        try:
            return self.http("GET", "/readyz", port=port, timeout=5).status == 200
        except OSError:
            return False

    def ssh_args(self, user: str) -> list[str]:
        return ["ssh", "-i", str(SSH_KEY), "-p", str(self.ssh_port), "-o", f"UserKnownHostsFile={KNOWN_HOSTS}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                "-o", "IdentitiesOnly=yes", f"{user}@127.0.0.1"]

    # ------------------------------------------------------------------ memory

    def oom_evidence(self, since: float | None = None) -> dict[str, Any]:
        """Every OOM signal readable here (journal: from `since`, a wall time); `checked` names the sources read."""
        state = self.inspect()
        evidence: dict[str, Any] = {"docker_oom_killed": bool(state["State"].get("OOMKilled")), "checked": ["docker inspect"]}
        kills, cgroup = {}, container_cgroup(state["Id"])
        if cgroup is not None and (cgroup / "memory.oom_control").is_file():  # v1: each group counts its own kills
            for control in sorted(cgroup.rglob("memory.oom_control"))[:200]:
                try:
                    fields = dict(line.split() for line in control.read_text().splitlines() if line.strip())
                except OSError:
                    continue
                if "oom_kill" in fields:  # kernels before 4.13 do not count kills here
                    kills[str(control.parent.relative_to(cgroup)) or "."] = int(fields["oom_kill"])
            evidence["checked"].append(f"cgroup v1 memory.oom_control of {cgroup} and every sub-group")
        elif cgroup is not None and (cgroup / "memory.events").is_file():  # v2: the count covers the sub-groups
            fields = dict(line.split() for line in (cgroup / "memory.events").read_text().splitlines() if line.strip())
            if "oom_kill" in fields:
                kills["."] = int(fields["oom_kill"])
            evidence["checked"].append(f"cgroup v2 memory.events of {cgroup}")
        # Without the cgroup's own counter, "no OOM kill" would rest on logs alone: the caller must know.
        evidence["cgroup_checked"] = bool(kills)
        evidence["cgroup_oom_kills"] = sum(kills.values())
        evidence["cgroup_oom_kills_by_group"] = {k: v for k, v in kills.items() if v}
        # The kernel's and systemd's own words; not gunicorn's "was sent SIGKILL! Perhaps out of memory?",
        # which any kill -9 of a worker (the fault tests) prints.
        window = ["--since", f"@{int(since)}"] if since else []
        journal = self.exec("journalctl", "--no-pager", "-q", "-o", "cat", *window, "--grep",
                            "Out of memory: Kill|oom-kill|invoked oom-killer|by the OOM killer|oom_reaper",
                            check=False, timeout=30)
        evidence["journal_oom_lines"] = [line for line in journal.stdout.splitlines() if line.strip()][:20]
        evidence["checked"].append("the container's journal")
        evidence["service_result"] = self.unit_property("toxic-service", "Result")
        evidence["checked"].append("systemctl show toxic-service -p Result")
        evidence["oom"] = (evidence["docker_oom_killed"] or evidence["cgroup_oom_kills"] > 0
                           or bool(evidence["journal_oom_lines"]) or evidence["service_result"] == "oom-kill")
        return evidence


def container_cgroup(container_id: str) -> Path | None:
    """The container's memory cgroup as this machine mounts it: cgroup v1 or v2, cgroupfs or systemd driver."""
    root = Path("/sys/fs/cgroup")
    scope = f"docker-{container_id}.scope"
    for candidate in (root / "memory" / "docker" / container_id, root / "memory" / "system.slice" / scope,
                      root / "system.slice" / scope, root / "docker" / container_id):
        if (candidate / "memory.stat").is_file():
            return candidate
    return None


def wait_until(what: str, predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> float:
    """Seconds until predicate() held; HostError naming `what` after `timeout` s."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        try:
            if predicate():
                return time.monotonic() - started
        except (OSError, subprocess.SubprocessError, HostError, ValueError):
            pass
        if time.monotonic() >= deadline:
            raise HostError(f"{what}: not reached within {timeout:.0f} s")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def provision_fingerprint() -> str:
    """What site.yml would lay down: the roles, playbooks, local inventory and the wheelhouse's names."""
    digest = hashlib.sha256()
    roots = [REPO / "roles", REPO / "playbooks", REPO / "inventory" / "local", REPO / "site.yml"]
    for root in roots:
        files = sorted(p for p in (root.rglob("*") if root.is_dir() else [root]) if p.is_file())
        for path in files:
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    wheelhouse = REPO / ".cache" / "wheelhouse"
    if wheelhouse.is_dir():
        for wheel in sorted(wheelhouse.glob("*.whl")):
            digest.update(f"{wheel.name}:{wheel.stat().st_size}".encode())
    return digest.hexdigest()[:20]


def provision_env() -> dict[str, str]:
    cache = REPO / ".cache"
    env = dict(os.environ)
    env.update({
        "PATH": f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}",
        "ANSIBLE_HOME": str(cache / "ansible" / "home"),
        "ANSIBLE_LOCAL_TEMP": str(cache / "ansible" / "tmp"),
        "ANSIBLE_FORCE_COLOR": "0",
    })
    return env
