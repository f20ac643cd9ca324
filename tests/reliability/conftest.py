"""The reliability suite's session: one container (`toxic-rel`) provisioned by site.yml.

Profile (env TOXIC_RELIABILITY_PROFILE): `short` (CI: ~60 s of load, 2,000
fuzz requests) or `full` (`make soak`: 10 minutes of load). The host is
brought up and provisioned once per session (skipped when the marker on the
host matches the current roles, playbooks and wheelhouse and /readyz answers)
and removed at the end unless TOXIC_KEEP_HOST=1.

Figures go to artifacts/reliability/figures-<profile>.json and .md (what
docs/reliability.md quotes); the load time series and its plot beside them.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from relhost import (
    ARTIFACTS,
    LOADGEN_IN_HOST,
    MARKER,
    REPO,
    HostError,
    RelHost,
    free_port,
    provision_env,
    provision_fingerprint,
    wait_until,
)

# Modules run in this order: the clean load first, then faults, bad input, security, and the
# abusive client last (its slow connections and rate-limit state must not colour the load figures).
MODULE_ORDER = ("test_load", "test_faults", "test_bad_input", "test_security", "test_edge_abuse")


@dataclass(frozen=True)
class Profile:
    name: str
    load_seconds: float  # constant load at 80 % of the measured maximum
    fuzz_requests: int
    fault_load_seconds: float  # the background load each fault test runs under
    ramp_step_seconds: float  # per concurrency level of the maximum's sweep


PROFILES = {
    "short": Profile("short", load_seconds=60, fuzz_requests=2000, fault_load_seconds=30, ramp_step_seconds=3),
    # 10 s steps: a 3 s burst once measured 969 req/s where 10 s steps measure ~750, and 80 % of that
    # burst (775 req/s) was more than the host sustained for 10 minutes (p99 20 s, 07:33 run).
    "full": Profile("full", load_seconds=600, fuzz_requests=5000, fault_load_seconds=40, ramp_step_seconds=10),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent

    def rank(item: pytest.Item) -> int:
        path = Path(str(item.fspath))
        if path.parent != here or path.stem not in MODULE_ORDER:
            return 0  # other suites keep their place
        return 1 + MODULE_ORDER.index(path.stem)

    items.sort(key=rank)  # stable: the order inside each module is kept


@pytest.fixture(scope="session")
def profile() -> Profile:
    name = os.environ.get("TOXIC_RELIABILITY_PROFILE", "short")
    if name not in PROFILES:
        raise pytest.UsageError(f"TOXIC_RELIABILITY_PROFILE={name!r}: use one of {', '.join(PROFILES)}")
    return PROFILES[name]


class Figures:
    """Each measured figure with its target, verdict and the command that reproduces it."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.rows: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}

    def add(self, name: str, value: Any, target: str, met: bool | None, note: str = "") -> None:
        self.rows.append({"figure": name, "value": value, "target": target, "met": met, "note": note})
        self.write()

    def write(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        doc = {"profile": self.profile.name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "figures": self.rows, **self.extra}
        (ARTIFACTS / f"figures-{self.profile.name}.json").write_text(json.dumps(doc, indent=2) + "\n")
        lines = [f"Profile `{self.profile.name}`, {doc['when']}", "", "| figure | value | target | met | note |",
                 "|---|---|---|---|---|"]
        for row in self.rows:
            met = {True: "yes", False: "**NO**", None: "n/a"}[row["met"]]
            lines.append(f"| {row['figure']} | {row['value']} | {row['target']} | {met} | {row['note']} |")
        (ARTIFACTS / f"figures-{self.profile.name}.md").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def figures(profile: Profile) -> Figures:
    return Figures(profile)


def _provision(host: RelHost, fingerprint: str) -> None:
    log = ARTIFACTS / "provision.log"
    env = provision_env() | {"TOXIC_LOCAL_SSH_PORT": str(host.ssh_port)}
    cmd = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", "inventory/local", "site.yml"]
    with log.open("w") as out:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=1800, check=False)
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        pytest.fail(f"site.yml against {host.name} failed (exit {proc.returncode}); {log}:\n{tail}")
    host.sh(f"mkdir -p $(dirname {MARKER}) && echo {fingerprint} > {MARKER}")


@pytest.fixture(scope="session")
def host(profile: Profile) -> Iterator[RelHost]:
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode:
        pytest.skip("reliability suite NOT RUN: no usable Docker engine on this machine")
    for asset in (REPO / ".cache/wheelhouse", REPO / ".cache/toxic-service/default/model",
                  REPO / ".cache/toxic-service/default/vocab.sqlite"):
        if not asset.exists():
            pytest.fail(f"{asset} is missing: run `make assets wheelhouse` first")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    rel = RelHost()
    started = time.monotonic()
    try:
        rel.up()
    except HostError as exc:
        pytest.fail(str(exc), pytrace=False)
    fingerprint = provision_fingerprint()
    marker = rel.exec("cat", MARKER, check=False).stdout.strip()
    if marker == fingerprint and wait_until_ready(rel, 30):
        print(f"\n{rel.name}: already provisioned with these roles ({fingerprint}); site.yml skipped")
    else:
        _provision(rel, fingerprint)
    rel.install_tools()
    rel.log.append(f"host ready in {time.monotonic() - started:.0f} s")
    yield rel
    if os.environ.get("TOXIC_KEEP_HOST") == "1":
        print(f"\nTOXIC_KEEP_HOST=1: {rel.name} kept (remove it: tools/local_host.py --name {rel.name} down)")
    else:
        rel.down()


def wait_until_ready(rel: RelHost, timeout: float) -> bool:
    try:
        wait_until("readiness", rel.ready, timeout)
        return True
    except AssertionError:
        return False


@pytest.fixture(scope="session")
def tunnel(host: RelHost) -> Iterator[int]:
    """A local port forwarded over SSH (as the admin user) to nginx on the host's own 127.0.0.1:80.

    nginx then sees the requests from loopback, which its rate limit exempts:
    the bad-input replay and the 2,000-request fuzz test nginx and the app, not
    the rate limit (the 429 test goes through the published port on purpose).
    """
    port = free_port()
    args = host.ssh_args(host.admin_user)
    cmd = [*args[:-1], "-N", "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{port}:127.0.0.1:80", args[-1]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until("the SSH tunnel to nginx", lambda: proc.poll() is None and host.ready(port), 20)
    except AssertionError:
        proc.kill()
        err = proc.communicate(timeout=5)[1].decode(errors="replace")
        pytest.fail(f"ssh -L to {host.name} failed: {err[-500:]}")
    yield port
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


class Load:
    """The load generator inside the host (tools/loadgen.py, copied there by RelHost.install_tools)."""

    def __init__(self, host: RelHost) -> None:
        self.host = host

    def ramp(self, levels: str = "1,2,4,8", step: float = 3.0) -> dict:
        proc = self.host.exec("python3", LOADGEN_IN_HOST, "--timeout", "10", "ramp", "--levels", levels, "--step", str(step),
                              timeout=len(levels.split(",")) * (step + 15) + 60)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def start(self, rate: float, seconds: float, name: str) -> BackgroundLoad:
        return BackgroundLoad(self.host, rate, seconds, f"/root/reliability/{name}.json")


class BackgroundLoad:
    """Constant load running while a test does something else; `finish()` returns its result.

    Returns once the generator has had its first successful request (bounded), so what a test does next
    happens under load.
    """

    READY_TIMEOUT_S = 30.0

    def __init__(self, host: RelHost, rate: float, seconds: float, out: str) -> None:
        self.host, self.out, self.seconds = host, out, seconds
        self.stop_file = out + ".stop"
        host.exec("rm", "-f", out, self.stop_file)
        self.proc = subprocess.Popen(
            ["docker", "exec", host.name, "python3", LOADGEN_IN_HOST, "constant", "--rate", f"{rate:.1f}",
             "--duration", str(seconds), "--out", out, "--stop-file", self.stop_file, "--sample-rss", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.started = time.time()
        first = self.proc.stdout.readline() if self._ready_within(self.READY_TIMEOUT_S) else ""  # type: ignore[union-attr]
        if '"event": "ready"' not in first:
            self.stop()
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"the load generator had no successful request within {self.READY_TIMEOUT_S:.0f} s: "
                                 f"{first} {err[-800:]}")

    def _ready_within(self, timeout: float) -> bool:
        """Whether the generator wrote its first line (the ready event) within `timeout` s."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
            return bool(selector.select(timeout))

    def stop(self) -> None:
        self.host.exec("touch", self.stop_file, check=False)

    def finish(self, stop: bool = False) -> dict:
        if stop:
            self.stop()
        try:
            _, err = self.proc.communicate(timeout=self.seconds + 90)
        except subprocess.TimeoutExpired:
            self.stop()
            self.proc.kill()
            self.proc.communicate(timeout=10)
            raise AssertionError(f"the load generator did not finish within {self.seconds + 90:.0f} s") from None
        if self.proc.returncode != 0:
            raise AssertionError(f"the load generator failed (exit {self.proc.returncode}): {err[-800:]}")
        return json.loads(self.host.exec("cat", self.out).stdout)


@pytest.fixture(scope="session")
def load(host: RelHost) -> Load:
    return Load(host)


@pytest.fixture(scope="session")
def max_rate(load: Load, figures: Figures) -> float:
    """The measured maximum: a closed-loop concurrency sweep through nginx, inside the host."""
    step = figures.profile.ramp_step_seconds
    ramp = load.ramp(step=step)
    (ARTIFACTS / f"ramp-{figures.profile.name}.json").write_text(json.dumps(ramp, indent=2) + "\n")
    best = ramp["best"]
    assert best, f"no clean step in the ramp: {ramp['steps']}"
    figures.add(f"maximum throughput (closed-loop sweep 1/2/4/8 connections, {step:.0f} s each)", f"{ramp['max_rps']:.0f} req/s",
                "measured", None, f"best at {best['concurrency']} connections, p99 {best['p99_ms']} ms")
    return float(ramp["max_rps"])

