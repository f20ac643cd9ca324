"""playbooks/preflight.yml refuses the published demo secrets and the CHANGE-ME placeholders.

The demo vault in inventory/production is encrypted with a password published next to it, so
its values are public: a host using them is open to anyone who reads this repository. The
preflight is run as a real run would be (the production inventory, its vault opened with the
example password), but on this machine (connection=local) and in check mode: nothing is changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PRODUCTION = REPO / "inventory" / "production"
DEMO_VAULT_PASSWORD = PRODUCTION / "vault-password.example.txt"
SECRETS = ("vault_mongodb_admin_password", "vault_mongodb_app_password")


def ansible_env(tmp: Path) -> dict[str, str]:
    return dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_HOME=str(tmp / "ansible-home"),
                ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"), ANSIBLE_DEPRECATION_WARNINGS="0")


def preflight(tmp: Path, inventory: Path, **extra_vars) -> subprocess.CompletedProcess:
    extra = tmp / "extra.json"
    extra.write_text(json.dumps({"ansible_python_interpreter": sys.executable, **extra_vars}))
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / "playbooks" / "preflight.yml"), "-c", "local",
         "--check", "--vault-password-file", str(DEMO_VAULT_PASSWORD), "-e", f"@{extra}"],
        capture_output=True, text=True, env=ansible_env(tmp), timeout=300, check=False, cwd=REPO)


def demo_values(tmp: Path) -> dict[str, str]:
    """The demo vault's values, decrypted with the published example password."""
    result = subprocess.run(
        [str(BIN / "ansible"), "-i", str(PRODUCTION), "toxic-1", "-c", "local", "-m", "ansible.builtin.debug",
         "-a", "msg={{ {" + ", ".join(f"'{n}': {n}" for n in SECRETS) + "} | to_json }}",
         "--vault-password-file", str(DEMO_VAULT_PASSWORD), "-e", f"ansible_python_interpreter={sys.executable}"],
        capture_output=True, text=True, env=ansible_env(tmp), timeout=120, check=True, cwd=REPO)
    body = result.stdout[result.stdout.index("{"):]
    return json.loads(json.loads(body)["msg"])


def refusal(result: subprocess.CompletedProcess) -> str:
    out = result.stdout + result.stderr
    print(out[-1500:])
    assert result.returncode != 0, "preflight let the run go on"
    assert "Refuse the published demo secrets" in out
    return out


def test_the_production_example_with_its_demo_vault_is_refused(tmp_path):
    out = refusal(preflight(tmp_path, PRODUCTION))
    assert "vault_mongodb_admin_password, vault_mongodb_app_password: the published demo values" in out
    for value in demo_values(tmp_path).values():
        assert value not in out, "the refusal printed a secret"


def test_the_example_vault_placeholders_are_refused(tmp_path):
    inventory = tmp_path / "production"
    shutil.copytree(PRODUCTION, inventory)
    vault = inventory / "group_vars" / "all" / "vault.yml"
    shutil.copy(vault.with_name("vault.yml.example"), vault)
    out = refusal(preflight(tmp_path, inventory))
    assert "vault_mongodb_admin_password, vault_mongodb_app_password: still CHANGE-ME" in out


def test_one_demo_value_left_is_named(tmp_path):
    out = refusal(preflight(tmp_path, PRODUCTION, vault_mongodb_admin_password="own-admin-secret-7Qm2"))
    assert "vault_mongodb_app_password: the published demo value." in out
    assert "vault_mongodb_admin_password" not in out.split("Refuse the published demo secrets", 1)[1]


def test_own_secrets_pass(tmp_path):
    result = preflight(tmp_path, PRODUCTION, vault_mongodb_admin_password="own-admin-secret-7Qm2",
                       vault_mongodb_app_password="own-app-secret-4Kd9")
    assert result.returncode == 0, result.stdout[-3000:]


def test_an_inventory_that_allows_demo_secrets_passes(tmp_path):
    # inventory/local's setting (a throwaway container on loopback), here with the demo vault.
    local = yaml.safe_load((REPO / "inventory" / "local" / "group_vars" / "all.yml").read_text())
    assert local["toxic_allow_demo_secrets"] is True
    result = preflight(tmp_path, PRODUCTION, toxic_allow_demo_secrets=True)
    assert result.returncode == 0, result.stdout[-3000:]


def test_the_preflight_knows_every_demo_value(tmp_path):
    # The preflight lists the demo values by sha256; a re-encrypted demo vault must be listed again.
    play = yaml.safe_load((REPO / "playbooks" / "preflight.yml").read_text())
    (task,) = [t for t in play[0]["tasks"] if t["name"].startswith("Refuse the published demo secrets")]
    listed = set(task["vars"]["__toxic_demo_secret_sha256"])
    for name, value in demo_values(tmp_path).items():
        assert hashlib.sha256(value.encode()).hexdigest() in listed, f"{name}'s demo value is not in the preflight's list"


@pytest.mark.parametrize("path", ["group_vars/all/vault.yml", "group_vars/all/vault.yml.example"])
def test_every_published_secret_is_one_the_preflight_checks(path):
    # The check reads vault_* variables: a secret under another name would pass unseen.
    names = set(yaml.safe_load((PRODUCTION / path).read_text().replace("!vault", "")) or {})
    assert names and all(n.startswith("vault_") for n in names), names
