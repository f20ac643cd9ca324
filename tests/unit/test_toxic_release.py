"""toxic-release, run as the real executable against a temporary release root.

Nothing of toxic-release is mocked. What stands in for the host:
- hand-built wheels (a tiny `toxic_service` whose `check` exits with a code
  baked into the wheel, and a tiny dependency), installed with real pip into
  a real venv;
- a fake `systemctl` (a shell script) that records its calls and, on
  `restart`, remembers which release is "running";
- a small http.server on loopback that answers /readyz and /detect-toxic the
  way the running release's baked-in `health.txt` says (HEALTH_MODES).

TOXIC_RELEASE_TEST_PYTHON runs the tool with that interpreter instead of its
#!/usr/bin/python3 (e.g. a Python 3.6, as on EL7); test_host_python.py runs a
tour of every subcommand under a real 3.6 when one is installed.

As root the tool refuses those hooks (a fake systemctl, a settings file, ...).
When this suite runs as root, the tool runs as uid 65534 in a user namespace
(AS_TEST_USER: it sees a non-root euid, as on a developer's machine, while its
files stay ours outside); tests/unit/test_release_root_hooks.py runs it as real
root and checks the refusals.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import http.server
import json
import os
import pwd
import shutil
import socketserver
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from host_pythons import NO_PYTHON36, PYTHON36

TOOL = Path(__file__).resolve().parents[2] / "roles" / "toxic_service" / "files" / "toxic-release"
LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
SEVEN_LABELS = (*LABELS, "spam")
# health.txt mode -> (GET /readyz status, the labels it declares, the labels the probe scores, their score)
HEALTH_MODES = {
    "ok": (200, LABELS, LABELS, 0.25),
    "seven": (200, SEVEN_LABELS, SEVEN_LABELS, 0.25),  # a 7-label bundle: as good as a 6-label one
    "badscores": (200, LABELS, LABELS[:5], 0.25),  # the probe lacks a label /readyz declares
    "extralabel": (200, LABELS, SEVEN_LABELS, 0.25),  # the probe scores a label /readyz does not declare
    "renamed": (200, LABELS, (*LABELS[:5], "spam"), 0.25),  # as many labels, one of them another
    "outofrange": (200, LABELS, LABELS, 1.5),
    "nolabels": (200, None, LABELS, 0.25),  # /readyz declares no labels
    "notready": (503, None, LABELS, 0.25),
}
HOST_PYTHON = os.environ.get("TOXIC_RELEASE_TEST_PYTHON")  # None: the tool's own #! line
AS_TEST_USER = ["unshare", "--user", "--map-user=65534", "--map-group=65534", "--"] if os.geteuid() == 0 else []

MAIN_PY = """import sys
from pathlib import Path
here = Path(__file__).parent
if sys.argv[1:] == ["check"]:
    print("check:", (here / "check.txt").read_text().strip())
    sys.exit(int((here / "check.txt").read_text()))
if sys.argv[1:] == ["dep"]:
    import tinydep
    print(tinydep.VALUE)
    sys.exit(0)
sys.exit(2)
"""


def build_wheel(directory: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A minimal, valid py3-none-any wheel (RECORD with real hashes)."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    wheel = directory / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def make_wheelhouse(
    base: Path, label: str, *, check_exit: int = 0, health: str = "ok", dep_version: str = "1.0", main: str = MAIN_PY
) -> Path:
    """label makes each app wheel distinct (and so each release)."""
    house = base / f"wheelhouse-{label}"
    house.mkdir()
    version = f"0.1.{int(hashlib.sha256(label.encode()).hexdigest()[:8], 16) % 10_000}"
    build_wheel(
        house,
        "toxic-service",
        version,
        {
            "toxic_service/__init__.py": f"LABEL = {label!r}\n",
            "toxic_service/__main__.py": main,
            "toxic_service/check.txt": f"{check_exit}\n",
            "toxic_service/health.txt": f"{health}\n",
        },
    )
    build_wheel(house, "tinydep", dep_version, {"tinydep.py": f"VALUE = {dep_version!r}\n"})
    write_manifest(house)
    return house


def write_manifest(house: Path) -> Path:
    """SHA256SUMS (sha256sum's format) of the wheels in house, as fab deploy and the role write it."""
    manifest = house / "SHA256SUMS"
    wheels = sorted(house.glob("*.whl"))
    manifest.write_text("".join(f"{hashlib.sha256(w.read_bytes()).hexdigest()}  {w.name}\n" for w in wheels))
    return manifest


class HealthHandler(http.server.BaseHTTPRequestHandler):
    state_dir: Path

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _mode(self) -> str:
        running = self.state_dir / "running"
        if not running.exists():
            return "down"
        return (Path(running.read_text().strip()) / "lib" / "toxic_service" / "health.txt").read_text().strip()

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        mode = self._mode()
        status, declared, _, _ = HEALTH_MODES.get(mode, (503, None, (), 0.0))
        if self.path == "/readyz" and status == 200:
            self._send(200, {"status": "ready", **({"labels": list(declared)} if declared else {})})
        else:
            self._send(503, {"error": {"code": "not_ready", "message": mode}})

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        assert "sequence" in body
        _, _, scored, value = HEALTH_MODES[self._mode()]
        self._send(200, {"prediction": {label: value for label in scored}})


@pytest.fixture(scope="session")
def seeded_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dependency env (tinydep 1.0) built by toxic-release itself, copied into each host.

    Building a venv with pip costs ~2.5 s; tests that need a different
    dependency set still build their own.
    """
    base = tmp_path_factory.mktemp("seed")
    config = base / "release.json"
    config.write_text(json.dumps({"root": str(base / "srv"), "python": sys.executable}))
    result = subprocess.run(
        [*AS_TEST_USER, str(TOOL), "prepare", "--wheelhouse", str(make_wheelhouse(base, "seed"))],
        capture_output=True,
        text=True,
        env={**os.environ, "TOXIC_RELEASE_CONFIG": str(config)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return next((base / "srv" / "shared" / "envs").iterdir())


@pytest.fixture
def host(tmp_path: Path, seeded_env: Path):
    """A fake host: release root, state dir, fake systemctl, health server, settings file."""
    root = tmp_path / "srv"
    state = tmp_path / "state"
    state.mkdir()
    (root / "shared" / "model").mkdir(parents=True)
    shutil.copytree(seeded_env, root / "shared" / "envs" / seeded_env.name, symlinks=True)
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {state}/calls\n'
        f'case "$1" in\n'
        f"  restart) readlink -f {root}/current > {state}/running ;;\n"
        f"  stop) rm -f {state}/running ;;\n"
        "esac\n"
    )
    systemctl.chmod(0o755)
    handler = type("Handler", (HealthHandler,), {"state_dir": state})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = tmp_path / "release.json"
    config.write_text(
        json.dumps(
            {
                "root": str(root),
                "python": sys.executable,
                "systemctl": str(systemctl),
                "health_via": "url",
                "health_url": f"http://127.0.0.1:{server.server_address[1]}/",
                "health_timeout": 3,
                "keep": 3,
                "env_file": str(tmp_path / "toxic.env"),
                "user": pwd.getpwuid(os.getuid()).pw_name,
            }
        )
    )
    yield Host(tmp_path, root, state, config)
    server.shutdown()
    server.server_close()


class Host:
    def __init__(self, base: Path, root: Path, state: Path, config: Path, python: str | None = HOST_PYTHON) -> None:
        self.base, self.root, self.state, self.config = base, root, state, config
        self.python = python  # the interpreter that runs toxic-release (None: its #! line)

    def run(self, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "TOXIC_RELEASE_CONFIG": str(self.config), **(env or {})}
        argv = [*AS_TEST_USER, *([self.python] if self.python else []), str(TOOL), *args]
        return subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=timeout, check=False)

    def prepare(self, house: Path) -> Path:
        result = self.run("prepare", "--wheelhouse", str(house), "--revision", house.name)
        assert result.returncode == 0, result.stderr
        return Path(result.stdout.strip())

    def deploy(self, house: Path) -> Path:
        release = self.prepare(house)
        result = self.run("activate", str(release))
        assert result.returncode == 0, result.stderr
        return release

    def current(self) -> str | None:
        link = self.root / "current"
        return os.readlink(link) if link.is_symlink() else None

    def calls(self) -> list[str]:
        path = self.state / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def releases(self) -> list[str]:
        return sorted(p.name for p in (self.root / "releases").iterdir())

    def log(self) -> list[dict]:
        return [json.loads(line) for line in (self.root / "shared" / "deploys.log").read_text().splitlines()]


def test_prepare_builds_a_runnable_release_and_reuses_the_env(host: Host) -> None:
    first = host.prepare(make_wheelhouse(host.base, "a", dep_version="3.0"))
    assert (first / "REVISION").read_text() == "wheelhouse-a\n"
    record = json.loads((first / "RELEASE.json").read_text())
    assert (
        record["app_wheel_sha256"]
        == hashlib.sha256(next((host.base / "wheelhouse-a").glob("toxic_service-*.whl")).read_bytes()).hexdigest()
    )
    # The wrapper runs the release's own code in the shared env (the dependency imports).
    dep = subprocess.run([str(first / "bin" / "toxic-service"), "dep"], capture_output=True, text=True, check=True)
    assert dep.stdout.strip() == "3.0"
    assert os.readlink(first / "model") == "../../shared/model"
    assert os.readlink(first / "env").startswith("../../shared/envs/")

    second = host.prepare(make_wheelhouse(host.base, "b", dep_version="3.0"))
    assert second.name > first.name
    assert os.readlink(second / "env") == os.readlink(first / "env"), "same dependencies must reuse the env"
    assert len(list((host.root / "shared" / "envs").iterdir())) == 2  # the seeded one and this

    third = host.prepare(make_wheelhouse(host.base, "c", dep_version="2.0"))
    assert os.readlink(third / "env") != os.readlink(first / "env"), "new dependencies need a new env"


def test_prepare_failing_midway_leaves_no_half_made_release(host: Host, seeded_env: Path) -> None:
    house = make_wheelhouse(host.base, "broken", dep_version="9.0")
    next(house.glob("tinydep-*.whl")).write_bytes(b"this is not a zip file")
    write_manifest(house)  # listed with its own hash: pip gets it, and fails on it
    result = host.run("prepare", "--wheelhouse", str(house))
    assert result.returncode == 1
    assert "installing dependencies failed" in result.stderr
    assert host.releases() == []
    assert [p.name for p in (host.root / "shared" / "envs").iterdir()] == [seeded_env.name]
    assert host.log()[-1]["result"] == "failed"


def test_prepare_refuses_a_wheelhouse_without_the_app_wheel(host: Host) -> None:
    house = host.base / "empty-house"
    house.mkdir()
    result = host.run("prepare", "--wheelhouse", str(house))
    assert result.returncode == 1
    assert f"wheelhouse {house} has no SHA256SUMS" in result.stderr
    write_manifest(house)
    result = host.run("prepare", "--wheelhouse", str(house))
    assert result.returncode == 1
    assert "SHA256SUMS must list exactly one toxic_service-*.whl, found 0" in result.stderr


def test_activate_switches_restarts_and_health_checks(host: Host) -> None:
    release = host.deploy(make_wheelhouse(host.base, "good"))
    assert host.current() == f"releases/{release.name}"
    assert host.calls() == ["reset-failed toxic-service.service", "restart toxic-service.service"]
    assert not list(host.root.glob("current.tmp-*"))
    last = host.log()[-1]
    assert (last["action"], last["release"], last["result"]) == ("activate", release.name, "ok")

    fingerprint = json.loads(host.run("fingerprint", "--wheelhouse", str(host.base / "wheelhouse-good")).stdout)
    assert fingerprint["differs"] is False
    fingerprint = json.loads(host.run("fingerprint", "--wheelhouse", str(make_wheelhouse(host.base, "next"))).stdout)
    assert fingerprint["differs"] is True


def test_a_release_failing_check_is_never_activated_and_is_removed(host: Host) -> None:
    good = host.deploy(make_wheelhouse(host.base, "good"))
    bad = host.prepare(make_wheelhouse(host.base, "bad", check_exit=3))
    result = host.run("activate", str(bad))
    assert result.returncode == 1
    assert "toxic-service check` of" in result.stderr and "exit 3" in result.stderr
    assert host.current() == f"releases/{good.name}"
    assert not bad.exists()
    assert host.calls() == ["reset-failed toxic-service.service", "restart toxic-service.service"], (
        "a refused release must not restart anything"
    )


@pytest.mark.parametrize(
    ("health", "reason"),
    [
        ("notready", "not ready within 3 s"),
        ("badscores", "(missing: identity_hate; not declared: none)"),
        ("extralabel", "(missing: none; not declared: spam)"),
        ("renamed", "(missing: identity_hate; not declared: spam)"),
        ("outofrange", "score toxic=1.5 is not a number in [0, 1]"),
        ("nolabels", "/readyz must declare `labels`"),
    ],
)
def test_an_unhealthy_release_is_switched_back(host: Host, health: str, reason: str) -> None:
    good = host.deploy(make_wheelhouse(host.base, "good"))
    bad = host.prepare(make_wheelhouse(host.base, "sick", health=health))
    result = host.run("activate", str(bad))
    assert result.returncode == 1
    assert reason in result.stderr
    assert f"switched back to {good.name}, which is healthy" in result.stderr
    assert host.current() == f"releases/{good.name}"
    assert (host.state / "running").read_text().strip() == str(good.resolve())
    assert host.calls().count("restart toxic-service.service") == 3
    assert not bad.exists()
    assert host.log()[-1]["result"] == "failed"


def test_labels_come_from_the_served_bundle_not_a_count(host: Host) -> None:
    """Six labels, then seven: the health check takes /readyz's labels; then a 6-label /readyz with a
    7-label probe is refused by name, and the 7-label release stays current."""
    host.deploy(make_wheelhouse(host.base, "six"))
    seven = host.prepare(make_wheelhouse(host.base, "seven", health="seven"))
    result = host.run("activate", seven.name)
    assert result.returncode == 0, result.stderr
    assert "probe scored the 7 labels /readyz declares (toxic, severe_toxic, obscene, threat, insult, identity_hate, spam)" in (
        result.stderr
    )
    assert host.current() == f"releases/{seven.name}"

    mismatch = host.prepare(make_wheelhouse(host.base, "mismatch", health="extralabel"))
    result = host.run("activate", mismatch.name)
    assert result.returncode == 1
    assert f"the probe scored labels {list(SEVEN_LABELS)} but /readyz declares {list(LABELS)}" in result.stderr
    assert host.current() == f"releases/{seven.name}"
    assert (host.state / "running").read_text().strip() == str(seven.resolve())


def test_a_failing_first_release_leaves_no_current_and_stops_the_service(host: Host) -> None:
    bad = host.prepare(make_wheelhouse(host.base, "sick", health="notready"))
    result = host.run("activate", bad.name)
    assert result.returncode == 1
    assert "no previous release" in result.stderr
    assert host.current() is None
    assert host.calls()[-1] == "stop toxic-service.service"


def test_rollback_refuses_without_an_older_release_then_goes_back(host: Host) -> None:
    result = host.run("rollback")
    assert result.returncode == 1 and "nothing to roll back to: no current release" in result.stderr
    first = host.deploy(make_wheelhouse(host.base, "one"))
    result = host.run("rollback")
    assert result.returncode == 1 and f"{first.name} is the oldest release kept" in result.stderr
    second = host.deploy(make_wheelhouse(host.base, "two"))
    assert host.current() == f"releases/{second.name}"
    result = host.run("rollback")
    assert result.returncode == 0, result.stderr
    assert host.current() == f"releases/{first.name}"
    assert host.log()[-1]["action"] == "rollback"
    result = host.run("rollback", "no-such-release")
    assert result.returncode == 1 and "no release 'no-such-release'" in result.stderr


def test_rollback_picks_the_release_before_the_current_one_not_a_newer_prepared_one(host: Host) -> None:
    """A prepare whose activate never ran (a deploy cut short) leaves a newer release behind:
    "the previous release" is still the one before the current one."""
    first = host.deploy(make_wheelhouse(host.base, "one"))
    second = host.deploy(make_wheelhouse(host.base, "two"))
    left_behind = host.prepare(make_wheelhouse(host.base, "three"))
    assert host.releases() == [first.name, second.name, left_behind.name]
    result = host.run("rollback")
    assert result.returncode == 0, result.stderr
    assert host.current() == f"releases/{first.name}"
    assert (host.state / "running").read_text().strip() == str(first.resolve())
    last = host.log()[-1]
    assert (last["action"], last["release"], last["previous"], last["result"]) == ("rollback", first.name, second.name, "ok")


def test_restart_restarts_and_health_checks_the_current_release(host: Host) -> None:
    result = host.run("restart")
    assert result.returncode == 1 and "nothing to restart: no current release" in result.stderr
    release = host.deploy(make_wheelhouse(host.base, "good"))
    calls = len(host.calls())
    result = host.run("restart")
    assert result.returncode == 0, result.stderr
    assert f"{release.name} is live: ready via" in result.stderr
    assert host.calls()[calls:] == ["reset-failed toxic-service.service", "restart toxic-service.service"]
    assert host.current() == f"releases/{release.name}"
    last = host.log()[-1]
    assert (last["action"], last["release"], last["previous"], last["result"]) == ("restart", release.name, release.name, "ok")


def test_restart_that_fails_its_health_check_keeps_the_release_and_says_so(host: Host) -> None:
    """The handler path: a re-run of site.yml restarts the current release; when it comes back
    unhealthy (here: its probe now lacks a label) the run fails, naming the release, and nothing is
    removed or switched: it was live before, and there is no better release to pick blindly."""
    older = host.deploy(make_wheelhouse(host.base, "older"))
    release = host.deploy(make_wheelhouse(host.base, "good"))
    (release / "lib" / "toxic_service" / "health.txt").write_text("badscores\n")
    result = host.run("restart")
    assert result.returncode == 1
    assert f"restart of the current release {release.name} failed its health check" in result.stderr
    assert "(missing: identity_hate; not declared: none)" in result.stderr
    assert host.current() == f"releases/{release.name}"
    assert release.is_dir() and older.is_dir()
    assert host.calls()[-2:] == ["reset-failed toxic-service.service", "restart toxic-service.service"]
    last = host.log()[-1]
    assert (last["action"], last["release"], last["result"]) == ("restart", release.name, "failed")
    assert "identity_hate" in last["message"]


def test_restart_of_a_release_that_fails_check_restarts_nothing(host: Host) -> None:
    release = host.deploy(make_wheelhouse(host.base, "good"))
    calls = host.calls()
    (release / "lib" / "toxic_service" / "check.txt").write_text("4\n")
    result = host.run("restart")
    assert result.returncode == 1
    assert f"{release.name} not activated: `toxic-service check` of {release.name} failed (exit 4)" in result.stderr
    assert host.calls() == calls, "a refused restart must not touch the running service"
    assert host.current() == f"releases/{release.name}" and release.is_dir(), "a release that was live is kept"
    assert host.log()[-1]["result"] == "refused"


def make_bundle(base: Path, content: bytes) -> Path:
    bundle = base / f"bundle-{hashlib.sha256(content).hexdigest()[:8]}"
    bundle.mkdir()
    (bundle / "model.tflite").write_bytes(content)
    meta = {"model": {"files": {"model.tflite": hashlib.sha256(content).hexdigest()}}, "vocabulary": {"checksum": "sha256:v1"}}
    (bundle / "metadata.json").write_text(json.dumps(meta))
    return bundle


def test_a_release_pins_its_model_and_a_rollback_restores_it(host: Host) -> None:
    first = host.deploy(make_wheelhouse(host.base, "one"))
    assert os.readlink(first / "model") == "../../shared/model"
    wrapper = (first / "bin" / "toxic-service").read_text()
    assert f"TOXIC_BUNDLE={first}/model " in wrapper, "check and serve use the release's model"

    bundle = make_bundle(host.base, b"weights v2")
    added = host.run("add-model", "--from", str(bundle))
    assert added.returncode == 0, added.stderr
    model = Path(added.stdout.strip())
    assert model.parent == host.root / "shared" / "models" and (model / "model.tflite").read_bytes() == b"weights v2"
    assert host.run("add-model", "--from", str(bundle)).stdout.strip() == str(model), "the same bundle is added once"

    (bundle / "model.tflite").write_bytes(b"tampered")
    refused = host.run("add-model", "--from", str(bundle))
    assert refused.returncode == 1 and "does not match metadata.json" in refused.stderr
    assert [p.name for p in model.parent.iterdir()] == [model.name], "a refused bundle leaves nothing behind"
    refused = host.run("prepare", "--wheelhouse", str(make_wheelhouse(host.base, "x")), "--model-dir", str(host.base))
    assert refused.returncode == 1 and "must be" in refused.stderr

    result = host.run("prepare", "--wheelhouse", str(make_wheelhouse(host.base, "two")), "--model-dir", str(model))
    assert result.returncode == 0, result.stderr
    second = Path(result.stdout.strip())
    assert host.run("activate", second.name).returncode == 0
    status = json.loads(host.run("status", "--json").stdout)
    assert status["model"] == {"path": str(model), "source": None, "vocabulary_checksum": "sha256:v1"}

    assert host.run("rollback").returncode == 0
    status = json.loads(host.run("status", "--json").stdout)
    assert status["current"] == first.name and status["model"]["path"] == str(host.root / "shared" / "model")

    third = host.deploy(make_wheelhouse(host.base, "three"))
    assert host.run("prune", "--keep", "1").returncode == 0
    assert host.releases() == [third.name]
    assert list((host.root / "shared" / "models").iterdir()) == [], "a model no release links is pruned"


def test_add_model_refuses_symlinks_in_and_to_the_bundle_and_copies_nothing(host: Host) -> None:
    """As root, a link in the deploy user's upload would make root copy a file of that user's choosing."""
    secret = host.base / "secret"
    secret.write_bytes(b"root's own file")
    models = host.root / "shared" / "models"

    linked_file = make_bundle(host.base, b"weights link")
    (linked_file / "extra.bin").symlink_to(secret)
    result = host.run("add-model", "--from", str(linked_file))
    assert result.returncode == 1 and "a bundle holds plain files only, not extra.bin" in result.stderr, result.stderr

    real = make_bundle(host.base, b"weights dir link")
    (host.base / "link-to-bundle").symlink_to(real)
    result = host.run("add-model", "--from", str(host.base / "link-to-bundle"))
    assert result.returncode == 1 and "'link-to-bundle' is a symlink" in result.stderr, result.stderr

    (host.base / "link-to-base").symlink_to(host.base)  # a symlinked directory higher up the path
    result = host.run("add-model", "--from", str(host.base / "link-to-base" / real.name))
    assert result.returncode == 1 and "'link-to-base' is a symlink" in result.stderr, result.stderr
    assert not models.exists() or list(models.iterdir()) == [], "nothing copied, no staging left"


def test_add_model_keeps_the_source_mode_without_exec_setuid_or_wider_bits(host: Host) -> None:
    bundle = make_bundle(host.base, b"weights modes")
    (bundle / "private.bin").write_bytes(b"p")
    (bundle / "program.bin").write_bytes(b"x")
    (bundle / "shared.bin").write_bytes(b"s")
    os.chmod(bundle / "private.bin", 0o640)
    os.chmod(bundle / "program.bin", 0o4755)  # setuid and executable
    os.chmod(bundle / "shared.bin", 0o666)  # world-writable
    result = host.run("add-model", "--from", str(bundle))
    assert result.returncode == 0, result.stderr
    model = Path(result.stdout.strip())
    modes = {p.name: oct(p.stat().st_mode & 0o7777) for p in model.iterdir()}
    assert modes["private.bin"] == "0o640", "never more permissive than the source"
    assert modes["program.bin"] == "0o644", "no setuid or execute bit survives the copy"
    assert modes["shared.bin"] == "0o644", "no group/other write"


def test_a_wheel_not_matching_the_manifest_is_refused_and_nothing_is_installed(host: Host, seeded_env: Path) -> None:
    house = make_wheelhouse(host.base, "swapped", dep_version="7.0")
    dep = next(house.glob("tinydep-*.whl"))
    build_wheel(host.base, "tinydep", "7.0", {"tinydep.py": "VALUE = 'not what was built'\n"}).replace(dep)
    result = host.run("prepare", "--wheelhouse", str(house))
    assert result.returncode == 1
    assert f"{dep}: sha256" in result.stderr and "does not match SHA256SUMS's" in result.stderr, result.stderr
    assert "nothing was installed" in result.stderr
    assert host.releases() == []
    assert [p.name for p in (host.root / "shared" / "envs").iterdir()] == [seeded_env.name], "no env was made"
    assert not list((host.root / "shared").glob(".wheelhouse-*")), "the checked copy is removed"

    dep.unlink()
    dep.symlink_to(host.base / "wheelhouse-elsewhere.whl")
    result = host.run("prepare", "--wheelhouse", str(house))
    assert result.returncode == 1 and "symlinks are refused" in result.stderr, result.stderr


def test_only_the_wheels_the_manifest_lists_are_installed(host: Host) -> None:
    house = make_wheelhouse(host.base, "listed")
    build_wheel(house, "intruder", "1.0", {"intruder.py": "VALUE = 1\n"})  # in the directory, not in SHA256SUMS
    release = host.prepare(house)
    env = (release / "env").resolve()
    assert not list(env.glob("lib/python*/site-packages/intruder*")), "a wheel the manifest does not list was installed"
    assert list(env.glob("lib/python*/site-packages/tinydep.py"))


def test_the_wrapper_quotes_its_paths(host: Host, tmp_path: Path) -> None:
    """A root with a space and a quote in it: unquoted, the wrapper's command splits (or becomes another)."""
    root = tmp_path / "srv it's"
    settings = json.loads(host.config.read_text())
    host.config.write_text(json.dumps({**settings, "root": str(root)}))
    (root / "shared" / "model").mkdir(parents=True)
    house = make_wheelhouse(host.base, "quoted")
    result = host.run("prepare", "--wheelhouse", str(house))
    assert result.returncode == 0, result.stderr
    release = Path(result.stdout.strip())
    ran = subprocess.run([str(release / "bin" / "toxic-service"), "dep"], capture_output=True, text=True, check=False)
    assert ran.returncode == 0 and ran.stdout.strip() == "1.0", (ran.stdout, ran.stderr)


def test_a_code_release_keeps_the_model_of_the_release_it_replaces(host: Host) -> None:
    """The role prepares without --model-dir: a model shipped with deploy-model must survive a site.yml run."""
    host.deploy(make_wheelhouse(host.base, "one"))
    model = Path(host.run("add-model", "--from", str(make_bundle(host.base, b"weights v3"))).stdout.strip())
    result = host.run("prepare", "--wheelhouse", str(make_wheelhouse(host.base, "two")), "--model-dir", str(model))
    assert result.returncode == 0, result.stderr
    assert host.run("activate", result.stdout.strip()).returncode == 0

    third = host.deploy(make_wheelhouse(host.base, "three"))
    assert (third / "model").resolve() == model
    assert json.loads(host.run("status", "--json").stdout)["model"]["path"] == str(model)


def test_prune_keeps_the_newest_and_the_current_and_drops_unused_envs(host: Host) -> None:
    # r0 has dependencies of its own; r1..r3 share the seeded env.
    names = [host.deploy(make_wheelhouse(host.base, f"r{i}", dep_version="1.5" if i == 0 else "1.0")).name for i in range(4)]
    # keep=3 in the settings: activation already pruned the oldest release and its now unused env.
    assert host.releases() == names[1:]
    assert [p.name for p in (host.root / "shared" / "envs").iterdir()] == [
        os.readlink(host.root / "releases" / names[1] / "env").split("/")[-1]
    ]
    assert host.run("rollback", names[1]).returncode == 0
    assert host.run("prune", "--keep", "1").returncode == 0
    assert host.releases() == [names[1], names[3]], "the current release survives any prune"


def test_a_second_deploy_waits_for_the_lock(host: Host) -> None:
    house = make_wheelhouse(host.base, "locked")
    (host.root / "shared").mkdir(parents=True, exist_ok=True)
    stderr_path = host.base / "prepare.stderr"
    stderr = open(stderr_path, "w")  # noqa: SIM115 (closed once the process is done)
    with open(host.root / "shared" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.Popen(
            [*AS_TEST_USER, *([host.python] if host.python else []), str(TOOL), "prepare", "--wheelhouse", str(house)],
            env={**os.environ, "TOXIC_RELEASE_CONFIG": str(host.config)},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        # Until it says it waits (bounded: a loaded machine starts Python slowly), the lock is held here.
        deadline = time.monotonic() + 60
        while "waiting" not in stderr_path.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, "prepare must wait while another deploy holds the lock"
        assert "waiting" in stderr_path.read_text(), "prepare said nothing of the lock within 60 s"
        time.sleep(0.5)
        assert not (host.root / "releases").exists() or host.releases() == []
    out, _ = proc.communicate(timeout=120)
    stderr.close()
    assert proc.returncode == 0, stderr_path.read_text()
    assert Path(out.strip()).is_dir()


def test_status_reports_current_health_and_recent_deploys(host: Host) -> None:
    release = host.deploy(make_wheelhouse(host.base, "good"))
    report = json.loads(host.run("status", "--json").stdout)
    assert report["current"] == release.name
    assert report["revision"] == "wheelhouse-good"
    assert report["health"]["readyz"] == 200
    assert [e["action"] for e in report["recent_deploys"]] == ["prepare", "activate"]


def test_health_through_a_unix_socket(host: Host, tmp_path: Path) -> None:
    """The pre-nginx path: health requests go straight to gunicorn's socket."""
    socket_path = tmp_path / "gunicorn.sock"
    handler = type("Handler", (HealthHandler,), {"state_dir": host.state})

    class UnixServer(socketserver.ThreadingUnixStreamServer):
        def get_request(self):  # http.server expects a (host, port) client address
            request, _ = super().get_request()
            return request, ("unix", 0)

    server = UnixServer(str(socket_path), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        release = host.prepare(make_wheelhouse(host.base, "sock"))
        result = host.run(
            "activate",
            release.name,
            env={
                "TOXIC_RELEASE_HEALTH_VIA": "socket",
                "TOXIC_RELEASE_HEALTH_SOCKET": str(socket_path),
            },
        )
        assert result.returncode == 0, result.stderr
        assert f"unix:{socket_path}" in result.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_bad_settings_are_refused_by_name(host: Host) -> None:
    host.config.write_text(json.dumps({"root": str(host.root), "helth_url": "x"}))
    result = host.run("status")
    assert result.returncode == 1 and "unknown keys ['helth_url']" in result.stderr
    shutil.rmtree(host.root)


# --------------------------------------------------------------------------- Python 3.6




@pytest.mark.skipif(PYTHON36 is None, reason=NO_PYTHON36)
def test_every_subcommand_runs_on_python_3_6(host: Host) -> None:
    """What EL7 runs: toxic-release under its /usr/bin/python3 (3.6); the env it builds uses the
    service's Python. The whole file runs this way with TOXIC_RELEASE_TEST_PYTHON=<a 3.6>."""
    host.python = PYTHON36
    version = subprocess.run([PYTHON36, "--version"], capture_output=True, text=True, check=True)
    assert "3.6" in version.stdout + version.stderr
    first = host.deploy(make_wheelhouse(host.base, "one"))
    fingerprint = json.loads(host.run("fingerprint", "--wheelhouse", str(host.base / "wheelhouse-one")).stdout)
    assert fingerprint["differs"] is False
    model = host.run("add-model", "--from", str(make_bundle(host.base, b"weights 3.6")))
    assert model.returncode == 0, model.stderr
    result = host.run("prepare", "--wheelhouse", str(make_wheelhouse(host.base, "two")), "--model-dir", model.stdout.strip())
    assert result.returncode == 0, result.stderr
    second = Path(result.stdout.strip())
    assert host.run("activate", second.name).returncode == 0
    assert host.run("restart").returncode == 0
    sick = host.prepare(make_wheelhouse(host.base, "sick", health="badscores"))
    result = host.run("activate", sick.name)
    assert result.returncode == 1 and f"switched back to {second.name}, which is healthy" in result.stderr
    assert host.run("rollback").returncode == 0
    status = json.loads(host.run("status", "--json").stdout)
    assert status["current"] == first.name and status["health"]["readyz"] == 200
    assert host.run("status").returncode == 0
    assert host.run("prune", "--keep", "1").returncode == 0
    assert host.releases() == [first.name, second.name], "the newest and the current one"
    switches = [(e["action"], e["result"]) for e in host.log() if e["action"] in ("activate", "restart", "rollback")]
    assert switches == [("activate", "ok"), ("activate", "ok"), ("restart", "ok"), ("activate", "failed"), ("rollback", "ok")]


# --------------------------------------------------------------------------- the real app, 7 labels

# A release whose code is the toxic_service installed beside this test run: `check`, `serve` and
# `vocab info` are the real ones, reading the release's model (TOXIC_BUNDLE, set by the wrapper).
# PYTHONPATH (the release's lib/, this shim) is dropped so that the real package is the one imported.
REAL_APP_MAIN = f"""import os, sys
env = {{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}}
os.execve({sys.executable!r}, [{sys.executable!r}, "-m", "toxic_service", *sys.argv[1:]], env)
"""


@pytest.fixture(scope="session")
def seven_label_fixtures():
    """The tiny fixture model with a seventh output, "spam" (fixtures_builder gives it toxic's weights)."""
    import fixtures_builder

    return fixtures_builder.build_tiny_fixtures(SEVEN_LABELS)


def free_port() -> int:
    with socketserver.TCPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler) as server:
        return server.server_address[1]


@pytest.fixture
def real_host(tmp_path: Path, seeded_env: Path, tiny_fixtures):
    """A host whose `systemctl restart` runs the current release's real `toxic-service serve`."""
    root, state = tmp_path / "srv", tmp_path / "state"
    state.mkdir()
    shutil.copytree(tiny_fixtures.bundle_dir, root / "shared" / "model")
    shutil.copy(tiny_fixtures.sqlite_path, root / "shared" / "vocab.sqlite")
    shutil.copytree(seeded_env, root / "shared" / "envs" / seeded_env.name, symlinks=True)
    port = free_port()
    env_file = tmp_path / "toxic.env"
    env_file.write_text(
        f"TOXIC_DATA_DIR={tmp_path / 'data'}\nTOXIC_SQLITE_PATH={root / 'shared' / 'vocab.sqlite'}\n"
        "TOXIC_VOCAB_BACKEND=sqlite\nTOXIC_RUNTIME=litert\nTOXIC_CACHE_ENTRIES=1000\n"
    )
    systemctl = tmp_path / "systemctl"
    # Like systemd: a clean environment plus toxic.env; stop waits (bounded) for the master to exit.
    systemctl.write_text(f"""#!/bin/sh
echo "$*" >> {state}/calls
stop() {{
    [ -f {state}/pid ] || return 0
    pid=$(cat {state}/pid); kill "$pid" 2>/dev/null; i=0
    while [ $i -lt 300 ] && kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' /proc/"$pid"/status 2>/dev/null; do
        sleep 0.1; i=$((i + 1))
    done
    rm -f {state}/pid
}}
case "$1" in
  restart) stop
    release=$(readlink -f {root}/current)
    echo "$release" > {state}/running
    env -i PATH=/usr/bin:/bin LANG=C.UTF-8 sh -c 'set -a; . {env_file}; set +a; exec "$0"/bin/toxic-service serve \
        --bind 127.0.0.1:{port} --workers 1' "$release" >> {state}/serve.log 2>&1 &
    echo $! > {state}/pid ;;
  stop) stop; rm -f {state}/running ;;
esac
""")
    systemctl.chmod(0o755)
    config = tmp_path / "release.json"
    config.write_text(json.dumps({
        "root": str(root), "python": sys.executable, "systemctl": str(systemctl), "health_via": "url",
        "health_url": f"http://127.0.0.1:{port}/", "health_timeout": 90, "keep": 5, "env_file": str(env_file),
        "user": pwd.getpwuid(os.getuid()).pw_name,
    }))
    host = Host(tmp_path, root, state, config)
    host.port = port
    yield host
    subprocess.run([str(systemctl), "stop"], check=False, timeout=60)


def readyz(port: int) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as answer:  # noqa: S310 (loopback)
        return json.loads(answer.read())


def test_a_seven_label_bundle_passes_activate_end_to_end(real_host: Host, seven_label_fixtures) -> None:
    """The real check, the real service and its /readyz, the real probe: 6 labels, then 7, then back."""
    from toxic_service.vocab.meta import read_meta

    host = real_host
    six = host.deploy(make_wheelhouse(host.base, "six", main=REAL_APP_MAIN))
    assert readyz(host.port)["labels"] == list(LABELS)
    status = json.loads(host.run("status", "--json").stdout)
    vocab = read_meta(host.root / "shared" / "vocab.sqlite")
    assert status["vocabulary"]["backend"] == "sqlite"
    assert status["vocabulary"]["path"] == str(host.root / "shared" / "vocab.sqlite")
    assert (status["vocabulary"]["checksum"], status["vocabulary"]["size"]) == (vocab["checksum"], vocab["size"])

    added = host.run("add-model", "--from", str(seven_label_fixtures.bundle_dir))
    assert added.returncode == 0, added.stderr
    result = host.run("prepare", "--wheelhouse", str(make_wheelhouse(host.base, "seven", main=REAL_APP_MAIN)),
                      "--model-dir", added.stdout.strip())
    assert result.returncode == 0, result.stderr
    seven = Path(result.stdout.strip())
    result = host.run("activate", seven.name)
    assert result.returncode == 0, result.stderr + (host.state / "serve.log").read_text()[-3000:]
    assert f"probe scored the 7 labels /readyz declares ({', '.join(SEVEN_LABELS)})" in result.stderr
    assert host.current() == f"releases/{seven.name}"
    assert readyz(host.port)["labels"] == list(SEVEN_LABELS)

    result = host.run("rollback")
    assert result.returncode == 0, result.stderr
    assert host.current() == f"releases/{six.name}" and readyz(host.port)["labels"] == list(LABELS)


def test_a_vocabulary_without_meta_is_refused_by_name_and_the_release_keeps_running(real_host: Host) -> None:
    host = real_host
    release = host.deploy(make_wheelhouse(host.base, "good", main=REAL_APP_MAIN))
    pid = (host.state / "pid").read_text()
    vocab = host.root / "shared" / "vocab.sqlite"
    good = host.base / "good-vocab.sqlite"
    os.replace(vocab, good)
    conn = sqlite3.connect(vocab)
    conn.execute("CREATE TABLE words(word TEXT PRIMARY KEY, idx INTEGER)")
    conn.commit()
    conn.close()

    status = json.loads(host.run("status", "--json").stdout)
    assert f"vocabulary file {vocab} has no meta table" in status["vocabulary"]["error"]
    calls = host.calls()
    result = host.run("restart")  # what the embeddings role's handler runs after a new vocabulary
    assert result.returncode == 1
    assert f"vocabulary file {vocab} has no meta table" in result.stderr
    assert host.calls() == calls, "the failed check restarted nothing"
    assert (host.state / "pid").read_text() == pid and host.current() == f"releases/{release.name}"
    # The same process, never restarted, serves again once the file is fixed in place.
    os.replace(good, vocab)
    deadline = time.monotonic() + 30
    while True:
        try:
            assert readyz(host.port)["labels"] == list(LABELS)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert (host.state / "pid").read_text() == pid
