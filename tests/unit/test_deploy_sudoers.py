"""The base role's sudo drop-in for the deploy user: toxic-release's subcommands as root, nothing else.

Ansible renders roles/base/templates/deploy-sudoers.j2 with the role's own defaults; `visudo -cf`
checks it as the role's validate step does on a host (skipped where there is no visudo: the
deploy suite, tests/deploy/test_sudo.py, checks it again in its container, and there also what
sudo lets the deploy user run). The role's refusal of a deploy user that is the admin user is
its own assert task, taken from tasks/deploy_user.yml and run on localhost.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "base"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
# A visudo command (e.g. one unpacked from Debian's sudo package with its LD_LIBRARY_PATH) where none is installed.
VISUDO = shlex.split(os.environ.get("TOXIC_TEST_VISUDO", "")) or (
    [shutil.which("visudo") or "/usr/sbin/visudo"] if (shutil.which("visudo") or Path("/usr/sbin/visudo").is_file()) else []
)
TOOL = "/usr/local/sbin/toxic-release"
SUBCOMMANDS = ["prepare", "activate", "restart", "rollback", "status", "prune", "add-model", "fingerprint", "logs"]


def playbook(tmp: Path, tasks: list[dict], extra_vars: dict) -> subprocess.CompletedProcess:
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars_files": [str(ROLE / "defaults" / "main.yml")], "tasks": tasks}]
    path = tmp / "play.yml"
    path.write_text(yaml.safe_dump(play))
    extra = tmp / "extra.json"
    extra.write_text(json.dumps({"ansible_python_interpreter": sys.executable, **extra_vars}))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_HOME=str(tmp / "ansible-home"), ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"))
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", str(path), "-e", f"@{extra}"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)


def render(tmp: Path, **overrides) -> Path:
    out = tmp / "toxic-deploy"
    task = {"ansible.builtin.template": {"src": str(ROLE / "templates" / "deploy-sudoers.j2"), "dest": str(out),
                                          "mode": "0440"}}
    result = playbook(tmp, [task], {"toxic_admin_user": "deploy", "toxic_deploy_user": "toxic-deploy", **overrides})
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def rules(text: str) -> list[str]:
    """The drop-in's logical lines: comments dropped, `\\` continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_drop_in_allows_only_toxic_release_subcommands(tmp_path: Path) -> None:
    lines = rules(render(tmp_path).read_text())
    assert lines[0] == "Defaults:toxic-deploy env_reset, !requiretty"
    alias = [line for line in lines if line.startswith("Cmnd_Alias")]
    assert len(alias) == 1
    commands = [c.strip() for c in alias[0].split("=", 1)[1].split(",")]
    expected = [c for sub in SUBCOMMANDS for c in (f"{TOOL} {sub}", f"{TOOL} {sub} *")]
    assert commands == expected, "each subcommand by the tool's absolute path, and nothing else"
    assert lines[2:] == ["toxic-deploy ALL=(root) NOPASSWD: TOXIC_DEPLOY"], "one rule, for the alias only"
    assert not re.search(r"NOPASSWD:\s*ALL|\bsudoedit\b|/bin/(ba)?sh\b", "\n".join(lines))


@pytest.mark.skipif(not VISUDO, reason="no visudo here (TOXIC_TEST_VISUDO names one); tests/deploy checks it in a container")
def test_visudo_accepts_the_drop_in_and_rejects_a_broken_one(tmp_path: Path) -> None:
    good = render(tmp_path)
    checked = subprocess.run([*VISUDO, "-cf", str(good)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = tmp_path / "broken"
    broken.write_text(good.read_text().replace("NOPASSWD: TOXIC_DEPLOY", "NOPASSWD TOXIC_DEPLOY"))
    refused = subprocess.run([*VISUDO, "-cf", str(broken)], capture_output=True, text=True, check=False)
    assert refused.returncode != 0, "visudo must be a real check: it accepted a syntax error"


def deploy_user_assert() -> dict:
    tasks = yaml.safe_load((ROLE / "tasks" / "deploy_user.yml").read_text())
    return next(t for t in tasks if t["name"].startswith("Refuse a deploy user"))


@pytest.mark.parametrize(("user", "why"), [("deploy", "the admin user"), ("root", "root"), ("bad user", "a space")])
def test_a_deploy_user_that_is_the_admin_user_or_root_is_refused(tmp_path: Path, user: str, why: str) -> None:
    result = playbook(tmp_path, [deploy_user_assert()], {"toxic_admin_user": "deploy", "toxic_deploy_user": user})
    assert result.returncode != 0, f"{why} accepted as the deploy user"
    assert "must be a user name of its own" in result.stdout, result.stdout


def test_a_deploy_user_of_its_own_passes(tmp_path: Path) -> None:
    result = playbook(tmp_path, [deploy_user_assert()], {"toxic_admin_user": "deploy", "toxic_deploy_user": "toxic-deploy"})
    assert result.returncode == 0, result.stdout + result.stderr
