"""Shared fixtures: a tiny real model bundle and its vocabulary (see fixtures_builder.py).

The files are built once per machine and cached; tests must treat them as
read-only (copy them to tmp_path before changing anything).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so any test can `import fixtures_builder`

import fixtures_builder  # noqa: E402
from toxic_service.settings import Settings  # noqa: E402


@pytest.fixture(scope="session")
def tiny_fixtures() -> fixtures_builder.TinyFixtures:
    return fixtures_builder.build_tiny_fixtures()


@pytest.fixture(scope="session")
def tiny_vocab_pairs(tiny_fixtures) -> list[tuple[str, int]]:
    return list(tiny_fixtures.pairs)


@pytest.fixture(scope="session")
def tiny_bundle_dir(tiny_fixtures) -> Path:
    return tiny_fixtures.bundle_dir


@pytest.fixture(scope="session")
def tiny_sqlite_path(tiny_fixtures) -> Path:
    return tiny_fixtures.sqlite_path


@pytest.fixture(scope="session")
def tiny_settings(tiny_fixtures) -> Settings:
    return Settings(
        data_dir=tiny_fixtures.root,
        bundle=tiny_fixtures.bundle_dir,
        sqlite_path=tiny_fixtures.sqlite_path,
        vocab_backend="sqlite",
        runtime="litert",
        cache_entries=1000,
    )


def pytest_terminal_summary(terminalreporter) -> None:
    """Say what did not run here and why, even under -q (without needing -rs)."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.section("not run here")
        for reason, count in sorted(reasons.items()):
            terminalreporter.write_line(f"{count:4d} skipped: {reason}")
