"""The base role's sshd drop-in: who may log in (AllowUsers/AllowGroups) and no forwarding, as sshd reads it.

Ansible renders roles/base/templates/sshd-hardening.conf.j2 with the role's own defaults (so the
default AllowUsers expression is what is tested), and this machine's `sshd -T` evaluates it the way
roles/base/files/toxic-sshd-check does on a host: the candidate first, then the real main config.
sshd is only asked to parse and print its settings; none is started. The lock-out guard is the
role's own assert task, taken from tasks/main.yml and run on localhost.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "base"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))

pytestmark = pytest.mark.skipif(
    not (Path(SSHD).is_file() and Path("/etc/ssh/sshd_config").is_file()),
    reason="needs OpenSSH's sshd and /etc/ssh/sshd_config on this machine (apt-get install openssh-server)",
)


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
    out = tmp / "00-toxic-hardening.conf"
    task = {"ansible.builtin.template": {"src": str(ROLE / "templates" / "sshd-hardening.conf.j2"), "dest": str(out),
                                          "mode": "0600"}}
    result = playbook(tmp, [task], {"toxic_admin_user": "deploy", **overrides})
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def sshd_settings(tmp: Path, candidate: Path, user: str = "deploy") -> dict[str, str]:
    """`sshd -T` on the candidate read before the machine's sshd_config, as toxic-sshd-check builds it."""
    # sshd -T insists on its privilege separation directory, which ssh.service makes when it starts
    # (RuntimeDirectory=sshd); on a machine where sshd is installed but not running it may be missing.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    main = tmp / "sshd_config"
    main.write_text(f"Include {candidate}\nInclude /etc/ssh/sshd_config\n")
    result = subprocess.run([SSHD, "-T", "-C", f"user={user},host=localhost,addr=127.0.0.1", "-f", str(main)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"sshd -T refused the rendered drop-in:\n{result.stderr}\n{candidate.read_text()}"
    settings: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        settings[key] = f"{settings[key]} {value}" if key in settings else value
    return settings


def test_only_the_admin_and_deploy_users_may_log_in_and_nothing_forwards(tmp_path):
    settings = sshd_settings(tmp_path, render(tmp_path, toxic_deploy_user="toxic-deploy"))
    print({k: settings.get(k) for k in ("allowusers", "allowgroups", "allowtcpforwarding", "allowagentforwarding",
                                        "x11forwarding", "allowstreamlocalforwarding", "permittunnel")})
    assert settings["allowusers"].split() == ["deploy", "toxic-deploy"]
    assert "allowgroups" not in settings
    assert settings["allowtcpforwarding"] == "no"
    assert settings["allowstreamlocalforwarding"] == "no"
    assert settings["allowagentforwarding"] == "no"
    assert settings["x11forwarding"] == "no"
    assert settings["permittunnel"] == "no"
    assert settings["permitrootlogin"] == "no" and settings["passwordauthentication"] == "no"


def test_without_a_deploy_user_only_the_admin_user_is_allowed(tmp_path):
    settings = sshd_settings(tmp_path, render(tmp_path))
    assert settings["allowusers"] == "deploy"


def test_forwarding_and_groups_when_asked_for(tmp_path):
    candidate = render(tmp_path, base_sshd_allow_tcp_forwarding=True, base_sshd_allow_agent_forwarding=True,
                       base_sshd_x11_forwarding=True, base_sshd_allow_groups=["deploy", "ssh-users"])
    settings = sshd_settings(tmp_path, candidate)
    assert settings["allowtcpforwarding"] == "yes" and settings["permitopen"] == "any"
    assert settings["allowstreamlocalforwarding"] == "no", "the gunicorn socket is never forwarded"
    assert settings["allowagentforwarding"] == "yes" and settings["x11forwarding"] == "yes"
    assert settings["allowgroups"].split() == ["deploy", "ssh-users"]
    assert settings["permittunnel"] == "no"


def lockout_guard() -> dict:
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    (task,) = [t for t in tasks if t["name"] == "Refuse an AllowUsers list that shuts out the admin user"]
    return task


@pytest.mark.parametrize("allow_users, refused", [
    (["alice"], True),
    (["deploy alice"], True),
    (["alice", "deploy@192.0.2.0/24"], False),
    ([], False),
])
def test_an_allow_list_without_the_admin_user_is_refused(tmp_path, allow_users, refused):
    result = playbook(tmp_path, [lockout_guard()], {"toxic_admin_user": "deploy", "base_sshd_allow_users": allow_users})
    print(allow_users, "->", "refused" if result.returncode else "accepted")
    assert (result.returncode != 0) is refused, result.stdout
    if refused:
        assert "base_sshd_allow_users" in result.stdout and "'deploy'" in result.stdout


def test_the_local_inventory_forwards_to_nginx_only(tmp_path):
    # inventory/local's exception for the reliability suite's `ssh -L` to nginx: that one destination.
    local = yaml.safe_load((REPO / "inventory" / "local" / "group_vars" / "all.yml").read_text())
    chosen = {k: v for k, v in local.items() if k.startswith("base_sshd_")}
    settings = sshd_settings(tmp_path, render(tmp_path, **chosen))
    assert settings["allowtcpforwarding"] == "yes" and settings["permitopen"] == "127.0.0.1:80"
    assert settings["allowstreamlocalforwarding"] == "no" and settings["allowagentforwarding"] == "no"
