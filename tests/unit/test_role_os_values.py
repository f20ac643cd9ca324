"""Every role's OS-specific values: vars/<os_family>.yml, then the overrides that exist.

Runs the roles' own tasks/os_values.yml through ansible-playbook on localhost
(connection local, no facts gathered: each fake host carries the facts of the OS it
stands for), so nothing on this machine changes. Checks that an unknown OS family fails
at once, naming the host, the family and the fact, and that the trimmed overrides
(RedHat-7.yml, RedHat-8.yml, Ubuntu.yml, Ubuntu-24.yml hold only what differs) still
give each platform the values it had before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
ROLES = ["base", "embeddings", "firewall", "mongodb", "nginx", "toxic_service"]

PLATFORMS = {
    "centos7": {"os_family": "RedHat", "distribution": "CentOS", "distribution_major_version": "7"},
    "rocky8": {"os_family": "RedHat", "distribution": "Rocky", "distribution_major_version": "8"},
    "rocky9": {"os_family": "RedHat", "distribution": "Rocky", "distribution_major_version": "9"},
    "debian12": {"os_family": "Debian", "distribution": "Debian", "distribution_major_version": "12"},
    "ubuntu22": {"os_family": "Debian", "distribution": "Ubuntu", "distribution_major_version": "22"},
    "ubuntu24": {"os_family": "Debian", "distribution": "Ubuntu", "distribution_major_version": "24"},
}

PLAYBOOK = """\
- name: Load every role's OS-specific values under fake facts
  hosts: all
  gather_facts: false
  tasks:
    - name: Pretend to be the platform
      ansible.builtin.set_fact:
        ansible_facts: "{{ fake_facts }}"
      when: fake_facts is defined

    - name: Load the values
      ansible.builtin.include_role:
        name: "{{ item }}"
        tasks_from: os_values
      loop: "{{ roles_under_test }}"

    - name: Write down what was loaded
      ansible.builtin.copy:
        content: "{{ dict(names | zip(query('ansible.builtin.vars', *names))) | to_json }}"
        dest: "{{ out_dir }}/{{ inventory_hostname }}.json"
        mode: "0600"
      vars:
        names: "{{ query('ansible.builtin.varnames', '^__(base|embeddings|firewall|mongodb|nginx|toxic_service)_') }}"
"""


def run_playbook(tmp_path: Path, hosts: dict[str, dict]) -> subprocess.CompletedProcess:
    inventory = {
        "all": {
            "hosts": hosts,
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "out_dir": str(tmp_path),
            },
        }
    }
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = dict(os.environ)
    env.update(
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
    )
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(tmp_path / "inventory.json"), str(tmp_path / "play.yml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> dict[str, dict]:
    tmp_path = tmp_path_factory.mktemp("os-values")
    hosts = {name: {"fake_facts": facts, "roles_under_test": ROLES} for name, facts in PLATFORMS.items()}
    result = run_playbook(tmp_path, hosts)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in PLATFORMS}


def test_unknown_os_family_fails_naming_host_family_and_fact(tmp_path):
    hosts = {
        f"plan9-{role}": {
            "fake_facts": {"os_family": "Plan9", "distribution": "Plan9", "distribution_major_version": "4"},
            "roles_under_test": [role],
        }
        for role in ROLES
    }
    hosts["no-facts"] = {"roles_under_test": ["base"]}
    result = run_playbook(tmp_path, hosts)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    for role in ROLES:
        host = f"plan9-{role}"
        assert not (tmp_path / f"{host}.json").exists(), f"{host}: the play went on past an unknown OS family"
        assert f"{host}: the {role} role has no values for OS family 'Plan9'" in out, out[-4000:]
        assert f"roles/{role}/vars/Plan9.yml does not exist" in out
    assert "ansible_facts['os_family']" in out
    assert "no-facts: the base role has no values for OS family '(facts not gathered)'" in out


def test_el_overrides_hold_only_what_differs(loaded):
    el7, el8, el9 = loaded["centos7"], loaded["rocky8"], loaded["rocky9"]
    assert el9["__base_update_packages"] == ["dnf-automatic"]
    assert el9["__base_sshd_main_has_include"] is True
    assert el8["__base_update_packages"] == ["dnf-automatic"]
    assert el8["__base_sshd_main_has_include"] is False
    assert el7["__base_update_packages"] == ["yum-cron"]
    assert el7["__base_sshd_main_has_include"] is False
    assert el7["__base_updates_unit"] == "yum-cron.service"
    assert el7["__base_updates_config_file"] == "/etc/yum/yum-cron.conf"
    # What the override does not name comes from the family file.
    for values in (el7, el8, el9):
        assert values["__base_sshd_service"] == "sshd"
        assert values["__base_timesync_service"] == "chronyd"
        assert "python3-apt" not in values["__base_packages"]
        assert values["__mongodb_service_user"] == "mongod"
        assert values["__nginx_user"] == "nginx"
        assert values["__firewall_default_backend"] == "firewalld"
        assert values["__toxic_service_socket_group"] == "nginx"
    assert el7["__mongodb_supported_versions"] == ["7.0"]
    assert "EL7" in el7["__mongodb_versions_note"]
    assert el9["__mongodb_supported_versions"] == ["7.0", "8.0"]
    assert "__mongodb_versions_note" not in el9


def test_debian_family_and_ubuntu_overrides(loaded):
    debian, jammy, noble = loaded["debian12"], loaded["ubuntu22"], loaded["ubuntu24"]
    for values in (debian, jammy, noble):
        assert values["__base_sshd_service"] == "ssh"
        assert "python3-apt" in values["__base_packages"]
        assert values["__base_update_packages"] == ["unattended-upgrades"]
        assert values["__mongodb_service_user"] == "mongodb"
        assert values["__nginx_user"] == "www-data"
        assert values["__toxic_service_nologin"] == "/usr/sbin/nologin"
        assert values["__firewall_default_backend"] == "nftables"
    assert (debian["__mongodb_apt_path"], debian["__mongodb_apt_component"]) == ("debian", "main")
    assert (jammy["__mongodb_apt_path"], jammy["__mongodb_apt_component"]) == ("ubuntu", "multiverse")
    assert (noble["__mongodb_apt_path"], noble["__mongodb_apt_component"]) == ("ubuntu", "multiverse")
    assert debian["__mongodb_supported_versions"] == ["7.0", "8.0"]
    assert jammy["__mongodb_supported_versions"] == ["7.0", "8.0"]
    assert noble["__mongodb_supported_versions"] == ["8.0"]
