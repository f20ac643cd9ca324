"""The deploy suite's host: container `toxic-fab` (its own ports), provisioned with site.yml, removed at the end.

Environment:
    TOXIC_FAB_NAME / _HTTP_PORT / _HTTPS_PORT / _SSH_PORT   the instance (default toxic-fab, 18080, 18443, 12222)
    TOXIC_FAB_KEEP=1          leave the container running after the suite (for a look around)
    TOXIC_FAB_REUSE=1         use the running, provisioned instance as it is (development only)

The host and the load generator are tools/fabhost.py's and tools/loadgen.py's (bench/deploy.py uses them too).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.fabhost import BASELINE_P99_MAX_MS, FIGURES, REPO, FabHost, HostError, SourceRepo, record  # noqa: E402

BASELINE_S = 15.0  # the no-deploy load: 600 requests at 40/s, enough for a p99


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/deploy/" in str(item.fspath):
            item.add_marker(pytest.mark.deploy)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "deploy: fab deploy/rollback against a provisioned container (make test-deploy)")


def _require_inputs() -> None:
    missing = [p for p in (REPO / ".cache" / "wheelhouse", REPO / ".cache" / "toxic-service" / "default" / "model",
                           REPO / ".cache" / "toxic-service" / "default" / "vocab.sqlite") if not p.exists()]
    if missing:
        pytest.fail(f"missing {', '.join(map(str, missing))}: run `make assets wheelhouse` first", pytrace=False)
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI is missing: the deploy suite needs its own container", pytrace=False)


@pytest.fixture(scope="session")
def fab_host() -> Iterator[FabHost]:
    _require_inputs()
    env = os.environ.get
    host = FabHost(
        name=env("TOXIC_FAB_NAME", "toxic-fab"),
        http_port=int(env("TOXIC_FAB_HTTP_PORT", "18080")),
        https_port=int(env("TOXIC_FAB_HTTPS_PORT", "18443")),
        ssh_port=int(env("TOXIC_FAB_SSH_PORT", "12222")),
    )
    host.work.mkdir(parents=True, exist_ok=True)
    if env("TOXIC_FAB_REUSE") == "1":
        host.write_inventory()
        host.install_loadgen()
        yield host
        return
    try:
        host.down()  # a clean host: whatever an interrupted run left goes first
        started = time.monotonic()
        host.up()
        FIGURES["host"] = {"up_seconds": round(time.monotonic() - started, 1), "provision_seconds": round(host.provision(), 1)}
    except HostError as exc:
        if env("TOXIC_FAB_KEEP") != "1":
            host.down()
        pytest.fail(str(exc), pytrace=False)
    yield host
    if env("TOXIC_FAB_KEEP") != "1":
        host.down()


@pytest.fixture(scope="session")
def baseline_load(fab_host: FabHost) -> dict:
    """The deploys' load with no deploy, measured once in this run: what "worst latency" is judged against."""
    with fab_host.load() as load:
        time.sleep(BASELINE_S)
    assert "error" not in load, load.get("error")
    assert load["errors"] == 0 and load["ok"] > 0, f"the load failed with no deploy running: {load['failures']}"
    record("load without a deploy (baseline)", requests=load["sent"], failed=load["errors"], p50_ms=load["p50_ms"],
           p99_ms=load["p99_ms"], max_latency_ms=load["max_ms"], load_average=round(os.getloadavg()[0], 1))
    assert load["p99_ms"] <= BASELINE_P99_MAX_MS, (
        f"with no deploy running, the load's p99 was {load['p99_ms']:.0f} ms (> {BASELINE_P99_MAX_MS:.0f} ms; p50 "
        f"{load['p50_ms']:.0f} ms, 1-minute load average {os.getloadavg()[0]:.1f}): this machine is too busy to judge "
        "a deploy's worst latency; run the suite again when it is quieter"
    )
    return load


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceRepo:
    return SourceRepo.create(tmp_path_factory.mktemp("fab-source"))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if FIGURES:
        out = REPO / ".cache" / "fab-test" / "figures.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(FIGURES, indent=2) + "\n")


def pytest_terminal_summary(terminalreporter) -> None:
    for name, figures in FIGURES.items():
        terminalreporter.write_line(f"deploy figures: {name}: {json.dumps(figures)}")
