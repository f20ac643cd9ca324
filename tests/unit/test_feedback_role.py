"""The role puts the feedback store in shared/ (it outlives every release) and lets the sandboxed unit
write there and nowhere else; the rendered unit passes `systemd-analyze verify` (templates rendered by Ansible
with the role's defaults)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "toxic_service"
TEMPLATES = ("toxic-service.service", "toxic-service.socket", "toxic.env")


def render(tmp: Path, **extra_vars) -> dict[str, str]:
    tasks = [
        {"ansible.builtin.template": {"src": str(ROLE / "templates" / f"{name}.j2"), "dest": str(tmp / name), "mode": "0644"}}
        for name in TEMPLATES
    ]
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "Debian.yml")], "tasks": tasks}]
    (tmp / "play.yml").write_text(yaml.safe_dump(play))
    (tmp / "extra.json").write_text(json.dumps({"ansible_python_interpreter": sys.executable, **extra_vars}))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_HOME=str(tmp / "home"),
               ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"))
    result = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,",
                             str(tmp / "play.yml"), "-e", f"@{tmp / 'extra.json'}"],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    return {name: (tmp / name).read_text() for name in TEMPLATES}


def _values(text: str, key: str) -> list[str]:
    return [v.strip() for v in re.findall(rf"^{re.escape(key)}=(.*)$", text, re.MULTILINE)]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("role")
    return tmp, render(tmp, toxic_root="/srv/toxic-service")


def test_the_feedback_file_lives_in_shared_not_in_a_release(rendered):
    _, files = rendered
    [db] = _values(files["toxic.env"], "TOXIC_FEEDBACK_DB")
    assert db == "/srv/toxic-service/shared/feedback/feedback.sqlite"
    assert _values(files["toxic.env"], "TOXIC_FEEDBACK_MAX_BYTES") == ["268435456"]


def test_the_unit_may_write_the_feedback_directory_and_creates_it_for_the_service_user(rendered):
    _, files = rendered
    unit = files["toxic-service.service"]
    directory = str(Path(_values(files["toxic.env"], "TOXIC_FEEDBACK_DB")[0]).parent)
    assert _values(unit, "ProtectSystem") == ["strict"]
    # The writable paths on disk (besides RuntimeDirectory): the directory of the SQLite file and its -wal/-shm,
    # and the API keys' one (their quota state; "-": its absence does not stop the unit).
    assert _values(unit, "ReadWritePaths") == [f"{directory} -/srv/toxic-service/shared/api-keys"]
    [pre] = _values(unit, "ExecStartPre")
    assert pre.startswith("+") and pre.split() == ["+/usr/bin/install", "-d", "-o", "toxic", "-g", "toxic", "-m", "0700",
                                                   directory]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_rendered_unit_passes_systemd_analyze_verify(rendered):
    tmp, _ = rendered
    # verify-unit tolerates only the not-yet-existing <root>/current ExecStart (first release).
    result = subprocess.run(
        ["sh", str(ROLE / "files" / "verify-unit"), "/srv/toxic-service/current/bin/toxic-service",
         str(tmp / "toxic-service.socket"), str(tmp / "toxic-service.service")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ExecStartPre" not in result.stderr and "ReadWritePaths" not in result.stderr, result.stderr
