"""The service's unit reaches no address but its database's: IPAddressDeny=any, and with the
MongoDB store IPAddressAllow= that host (the unit is rendered by Ansible with the role's defaults)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "toxic_service"


def render_unit(tmp: Path, **extra_vars) -> str:
    out = tmp / "toxic-service.service"
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars_files": [str(ROLE / "defaults" / "main.yml")],
             "tasks": [{"ansible.builtin.template": {"src": str(ROLE / "templates" / "toxic-service.service.j2"),
                                                     "dest": str(out), "mode": "0644"}}]}]
    (tmp / "play.yml").write_text(yaml.safe_dump(play))
    (tmp / "extra.json").write_text(json.dumps({"ansible_python_interpreter": sys.executable, **extra_vars}))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_HOME=str(tmp / "home"),
               ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"))
    result = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,",
                             str(tmp / "play.yml"), "-e", f"@{tmp / 'extra.json'}"],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    return out.read_text()


def addresses(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"IPAddressDeny": [], "IPAddressAllow": []}
    for key, value in re.findall(r"^(IPAddress(?:Deny|Allow))=(.*)$", unit, re.MULTILINE):
        found[key].append(value.strip())
    return found


@pytest.mark.parametrize("host", ["127.0.0.1", "192.168.139.20"])
def test_with_mongodb_only_the_databases_address_is_allowed(tmp_path, host):
    unit = render_unit(tmp_path, toxic_vocab_backend="mongodb",
                       toxic_mongodb_uri=f"mongodb://toxic_app:CHANGE-ME%2Fx@{host}:27017/word_embeddings?authSource=admin")
    print(addresses(unit))
    assert addresses(unit) == {"IPAddressDeny": ["any"], "IPAddressAllow": [host]}


def test_with_sqlite_no_address_at_all(tmp_path):
    unit = render_unit(tmp_path, toxic_vocab_backend="sqlite")
    assert addresses(unit) == {"IPAddressDeny": ["any"], "IPAddressAllow": []}
