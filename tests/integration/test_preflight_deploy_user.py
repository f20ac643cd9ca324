"""playbooks/preflight.yml refuses a deploy user that would carry the admin user's full sudo, and keys
that are not a list, before anything is written (roles/base would make the drop-in for that user).

Run as a real run would be, against inventory/local, but on this machine (connection=local) and in
check mode: nothing is changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def preflight(tmp: Path, **extra_vars) -> subprocess.CompletedProcess:
    extra = tmp / "extra.json"
    extra.write_text(json.dumps({"ansible_python_interpreter": sys.executable, **extra_vars}))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_HOME=str(tmp / "ansible-home"),
               ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"), ANSIBLE_DEPRECATION_WARNINGS="0")
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(REPO / "inventory" / "local"), str(REPO / "playbooks" / "preflight.yml"),
         "-c", "local", "--check", "--tags", "always", "-e", f"@{extra}"],
        capture_output=True, text=True, env=env, timeout=300, check=False, cwd=REPO)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"toxic_deploy_user": "deploy"}, "toxic_deploy_user = deploy: must be empty (no deploy user) or a login name"),
        ({"toxic_deploy_user": "root"}, "toxic_deploy_user = root: must be empty"),
        ({"toxic_deploy_keys": "ssh-ed25519 AAAA one key, not a list"}, "toxic_deploy_keys = ssh-ed25519 AAAA"),
    ],
    ids=["the admin user", "root", "keys not a list"],
)
def test_a_deploy_user_with_the_admin_users_rights_is_refused(tmp_path: Path, overrides: dict, named: str) -> None:
    result = preflight(tmp_path, **overrides)
    out = result.stdout + result.stderr
    assert result.returncode != 0, f"preflight let the run go on:\n{out[-2000:]}"
    assert named in out, out[-2000:]


def test_the_local_inventorys_deploy_user_passes(tmp_path: Path) -> None:
    result = preflight(tmp_path)
    out = result.stdout + result.stderr
    assert "toxic_deploy_user =" not in out and "toxic_deploy_keys =" not in out, out[-2000:]
