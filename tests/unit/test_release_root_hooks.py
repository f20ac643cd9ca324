"""toxic-release run as real root refuses every test hook (issue 11, item 3).

Through sudo the deploy user may run toxic-release and nothing else; sudoers cannot
fix every argument (its `*` matches spaces too), so the tool itself must not let a
flag or variable choose a command, interpreter, settings file, root or health
target when it runs as root. Probed before the fix: `status --systemctl
"/bin/sh -c id>FILE"` ran the command as root. Each case here would run a
command that writes a marker; the marker must not appear.

These run only as root (this project's test machine and CI run as root); as
another user they are skipped, since the hooks are then allowed by design
(tests/unit/test_toxic_release.py uses them).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "roles" / "toxic_service" / "files" / "toxic-release"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the refusals apply to root only; run as root to check them")


def run_as_root(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TOXIC_RELEASE_")}
    return subprocess.run([str(TOOL), *args], capture_output=True, text=True, env={**clean, **(env or {})},
                          timeout=60, check=False)


@pytest.fixture
def marker_command(tmp_path: Path) -> tuple[str, Path]:
    """A command that, if anything runs it, leaves a marker file (what an attacker's `id>FILE` would do)."""
    marker = tmp_path / "ran-as-root"
    script = tmp_path / "evil"
    script.write_text(f"#!/bin/sh\nid > {marker}\n")
    script.chmod(0o755)
    return str(script), marker


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["status", "--systemctl", "{cmd}"], "--systemctl"),
        (["restart", "--systemctl", "{cmd}"], "--systemctl"),
        (["fingerprint", "--wheelhouse", "/nonexistent", "--python", "{cmd}"], "--python"),
        (["prepare", "--wheelhouse", "/nonexistent", "--python", "{cmd}"], "--python"),
        (["status", "--root", "{tmp}/srv"], "--root"),
        (["status", "--config", "{tmp}/release.json"], "--config"),
        (["status", "--health-url", "http://127.0.0.1:9/"], "--health-url"),
        (["status", "--health-via", "url"], "--health-via"),
    ],
)
def test_a_hook_flag_is_refused_as_root_and_runs_nothing(marker_command, tmp_path: Path, args: list[str],
                                                          flag: str) -> None:
    command, marker = marker_command
    # A settings file that would run the marker command as systemctl, for --config.
    (tmp_path / "release.json").write_text(json.dumps({"systemctl": command, "python": command}))
    argv = [a.format(cmd=command, tmp=tmp_path) for a in args]
    result = run_as_root(*argv)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{flag} is refused when running as root" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists(), f"{flag} ran a command as root: {marker.read_text()}"
    assert not (tmp_path / "srv").exists(), "nothing made under a root the caller chose"


@pytest.mark.parametrize("variable", ["TOXIC_RELEASE_SYSTEMCTL", "TOXIC_RELEASE_PYTHON", "TOXIC_RELEASE_CONFIG",
                                      "TOXIC_RELEASE_ROOT"])
def test_a_hook_variable_is_refused_as_root_and_runs_nothing(marker_command, tmp_path: Path, variable: str) -> None:
    command, marker = marker_command
    (tmp_path / "release.json").write_text(json.dumps({"systemctl": command}))
    value = {"TOXIC_RELEASE_CONFIG": str(tmp_path / "release.json"), "TOXIC_RELEASE_ROOT": str(tmp_path / "srv")}.get(
        variable, command
    )
    result = run_as_root("status", env={variable: value})
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{variable} refused when running as root" in result.stderr, result.stderr
    assert not marker.exists(), f"{variable} ran a command as root: {marker.read_text()}"
