"""tools/host_deps.sh, what `make demo`, `make test` and .ci/run run first.

The script runs for real: as an unprivileged user it must only say what to run,
as root with everything present it must do nothing, and as root it installs what
is missing and starts an engine that outlives it. apt-get, dockerd and docker are
stand-ins on PATH (system tools, not our code); the user is real: the tests that
need root switch to `nobody` with setpriv, or skip when not root.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "host_deps.sh"
# Every command the script looks up, and the package that provides it.
CHECKED = {
    "dockerd": "docker.io",
    "docker": "docker.io",
    "debootstrap": "debootstrap",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
    "curl": "curl",
    "wrk": "wrk",
    "ssh": "openssh-client",
    "sshd": "openssh-server",
    "rsync": "rsync",
    "git": "git",
    "make": "make",
    "node": "nodejs",
    "npm": "npm",
}
SYSTEM_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
IS_ROOT = os.geteuid() == 0


@pytest.fixture
def world():
    """A world-readable copy of the script, a bin dir of the system's commands minus the checked ones, a record dir."""
    root = Path(tempfile.mkdtemp(prefix="host-deps-"))
    try:
        (root / "tools").mkdir()
        shutil.copy2(SCRIPT, root / "tools" / "host_deps.sh")
        system = root / "system-bin"
        system.mkdir()
        for d in SYSTEM_DIRS:
            if not os.path.isdir(d):
                continue
            for entry in os.scandir(d):
                target = system / entry.name
                if entry.name in CHECKED or entry.name in ("apt-get", "python3") or target.exists():
                    continue
                target.symlink_to(entry.path)
        (root / "stubs").mkdir()
        (root / "record").mkdir()
        for p in (root, root / "tools", system, root / "stubs"):
            p.chmod(0o755)
        (root / "record").chmod(0o777)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def stub(world: Path, name: str, body: str) -> None:
    path = world / "stubs" / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def stub_common(world: Path, present: set[str], python3: str | None = "exit 0") -> None:
    """Stand-ins: `present` commands exist; apt-get records its arguments; python3 runs `python3` (None: absent)."""
    for name in present:
        if name not in ("docker", "dockerd"):
            stub(world, name, "exit 0")
    stub(world, "apt-get", f'echo "$*" >> {world}/record/apt-get')
    if python3 is not None:
        stub(world, "python3", python3)


def run(world: Path, *args: str, as_nobody: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {"PATH": f"{world}/stubs:{world}/system-bin", "HOME": str(world), "LC_ALL": "C"}
    cmd = ["bash", str(world / "tools" / "host_deps.sh"), *args]
    if as_nobody:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", *cmd]
    return subprocess.run(cmd, env=env, cwd=world, capture_output=True, text=True, timeout=timeout, check=False)


def test_unprivileged_without_engine_or_packages_says_what_to_run(world):
    # Real non-root: nobody when the suite runs as root (CI), else the user running it.
    if IS_ROOT and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot become an unprivileged user")
    present = set(CHECKED) - {"docker", "dockerd", "chromium", "wrk"}
    stub_common(world, present)
    done = run(world, "--for", "make demo", as_nobody=IS_ROOT)
    assert done.returncode == 1, done
    message = done.stderr
    assert "`make demo` needs what only root can set up" in message
    assert "missing Debian packages: docker.io chromium wrk" in message
    assert "  sudo apt-get install -y --no-install-recommends docker.io chromium wrk\n" in message
    assert "the Docker engine is not running" in message
    assert "  sudo sh -c 'dockerd >/var/log/dockerd.log 2>&1 &'\n" in message
    assert "or run the whole command as root: sudo make demo" in message
    assert not (world / "record" / "apt-get").exists(), "an unprivileged run must not call apt-get"
    assert not (world / ".cache").exists(), "an unprivileged run must not write anything"


def test_unprivileged_with_everything_present_passes(world):
    if IS_ROOT and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot become an unprivileged user")
    stub_common(world, set(CHECKED))
    stub(world, "docker", 'test "$1" = info')
    stub(world, "dockerd", "exit 1")
    done = run(world, "--for", "make test", as_nobody=IS_ROOT)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.skipif(not IS_ROOT, reason="needs root: the root path installs and starts things")
def test_root_with_everything_present_does_nothing_fast(world):
    stub_common(world, set(CHECKED))
    stub(world, "docker", 'test "$1" = info')
    stub(world, "dockerd", f"touch {world}/record/dockerd")
    pid_file = world / "record" / "pid"
    start = time.monotonic()
    done = run(world, "--for", "make demo", "--pid-file", str(pid_file))
    elapsed = time.monotonic() - start
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not (world / "record" / "apt-get").exists()
    assert not (world / "record" / "dockerd").exists()
    assert pid_file.read_text() == "", "no engine was started, so no PID to stop"
    assert elapsed < 5.0, f"a no-op run took {elapsed:.2f} s"  # ~0.05 s; generous for a loaded machine


@pytest.mark.skipif(not IS_ROOT, reason="needs root: the root path installs and starts things")
def test_root_installs_the_missing_and_starts_an_engine_that_outlives_it(world):
    stub_common(world, set(CHECKED) - {"docker", "dockerd", "rsync"})
    # apt-get "installs" docker.io: it puts the stand-in engine and client on PATH. The
    # client answers once the engine runs; the engine stays up like the real one.
    up = world / "record" / "engine-up"
    pending = world / "pending"
    pending.mkdir()
    for name, body in (("docker", f'test "$1" = info && test -f {up}'),
                       ("dockerd", f"echo dockerd-log-line; touch {up}; exec sleep 120")):
        (pending / name).write_text("#!/bin/sh\n" + body + "\n")
        (pending / name).chmod(0o755)
    stub(world, "apt-get", f'echo "$*" >> {world}/record/apt-get; '
                           f'case "$*" in *docker.io*) cp {pending}/docker {pending}/dockerd {world}/stubs/ ;; esac')
    pid_file = world / "record" / "pid"
    done = run(world, "--for", "make demo", "--pid-file", str(pid_file))
    pid = int(pid_file.read_text() or 0)
    try:
        assert done.returncode == 0, done
        calls = (world / "record" / "apt-get").read_text().splitlines()
        assert calls == ["update -q", "install -y -q --no-install-recommends docker.io rsync"]
        log = world / ".cache" / "dockerd.log"
        assert f"dockerd is running (PID {pid}, log {log}); it keeps running after this run" in done.stdout
        assert log.read_text() == "dockerd-log-line\n"
        os.kill(pid, 0)  # still alive after the script exited
        assert os.getsid(pid) == pid, "dockerd must lead its own session (a Ctrl-C in make must not stop it)"
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)


@pytest.mark.skipif(not IS_ROOT, reason="needs root: the root path installs things")
@pytest.mark.parametrize(
    ("python3", "packages"),
    [(None, "python3 python3-venv"), ("exit 1", "python3-venv")],  # no python3; one without ensurepip
    ids=["no-python3", "no-ensurepip"],
)
def test_root_installs_what_make_venv_needs(world, python3, packages):
    stub_common(world, set(CHECKED), python3=python3)
    stub(world, "docker", 'test "$1" = info')
    stub(world, "dockerd", "exit 1")
    done = run(world, "--for", "make test")
    assert done.returncode == 0, done
    calls = (world / "record" / "apt-get").read_text().splitlines()
    assert calls == ["update -q", f"install -y -q --no-install-recommends {packages}"]


@pytest.mark.skipif(not IS_ROOT, reason="needs root: the root path starts things")
def test_root_does_not_claim_an_engine_it_did_not_start(world):
    # The dockerd started here exits (another engine took the socket meanwhile): nothing for CI to stop.
    stub_common(world, set(CHECKED))
    # The client: no engine at the first call, an engine from the second on (after a pause in which
    # the stand-in dockerd has long exited).
    calls = world / "record" / "docker-calls"
    stub(world, "docker", f'echo x >> {calls}; [ "$(wc -l < {calls})" -gt 1 ] && sleep 0.5')
    stub(world, "dockerd", "exit 1")
    pid_file = world / "record" / "pid"
    done = run(world, "--for", "make demo", "--pid-file", str(pid_file))
    assert done.returncode == 0, done
    assert "it is not the dockerd started here" in done.stdout
    assert pid_file.read_text() == ""
