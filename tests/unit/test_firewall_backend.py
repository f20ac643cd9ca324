"""The firewall role's backend choice: firewall_backend, else the OS family's default.

Runs the role's own vars files and argument_specs through ansible-playbook on localhost
(connection local, fake facts, nothing on this machine changes). Both backends run for
real in containers (molecule/local: nftables by default on Debian; molecule/firewalld:
nftables, then the switch to firewalld); this checks what those cannot: EL's default.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles/firewall"
BIN = Path(sys.executable).parent

PLAYBOOK = [{
    "name": "Resolve the firewall backend",
    "hosts": "all",
    "gather_facts": False,
    "tasks": [
        {"name": "Validate the arguments as the role does",
         "ansible.builtin.validate_argument_spec": {
             "argument_spec": "{{ (lookup('ansible.builtin.file', role_dir ~ '/meta/argument_specs.yml')"
                              " | from_yaml).argument_specs.main.options }}",
             "provided_arguments": "{{ given }}"}},
        {"name": "Load the role's values", "ansible.builtin.include_vars": "{{ item }}",
         "loop": ["{{ role_dir }}/vars/main.yml", "{{ role_dir }}/vars/{{ os_family }}.yml"]},
        {"name": "Write down the backend and its packages", "ansible.builtin.copy": {
            "dest": "{{ out_dir }}/{{ inventory_hostname }}.json", "mode": "0600",
            "content": "{{ {'backend': __firewall_backend,"
                       " 'packages': __firewall_backend_packages[__firewall_backend]} | to_json }}"}},
    ],
}]


def run(tmp_path: Path, hosts: dict[str, dict]) -> subprocess.CompletedProcess:
    # Each host carries its arguments twice: as host variables, as a play would set
    # them, and as `given` for the argument check.
    hosts = {name: dict(host, **host["given"]) for name, host in hosts.items()}
    inventory = {"all": {"hosts": hosts, "vars": {"ansible_connection": "local",
                                                  "ansible_python_interpreter": sys.executable,
                                                  "out_dir": str(tmp_path), "role_dir": str(ROLE)}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    env = dict(os.environ, ANSIBLE_HOME=str(tmp_path / "home"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0")
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp_path / "inventory.json"),
                           str(tmp_path / "play.yml")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_backend_defaults_per_os_family_and_yields_to_firewall_backend(tmp_path):
    ports = {"firewall_allowed_tcp_ports": [22, 80, 443]}
    hosts = {
        "el": {"os_family": "RedHat", "given": ports},
        "debian": {"os_family": "Debian", "given": ports},
        "debian-firewalld": {"os_family": "Debian", "given": dict(ports, firewall_backend="firewalld")},
        "el-nftables": {"os_family": "RedHat", "given": dict(ports, firewall_backend="nftables")},
        "ufw": {"os_family": "Debian", "given": dict(ports, firewall_backend="ufw")},
    }
    result = run(tmp_path, hosts)
    out = result.stdout + result.stderr
    got = {h: json.loads((tmp_path / f"{h}.json").read_text()) for h in hosts if (tmp_path / f"{h}.json").exists()}
    assert got.pop("el") == {"backend": "firewalld", "packages": ["firewalld"]}, out[-3000:]
    assert got.pop("debian") == {"backend": "nftables", "packages": ["nftables"]}
    assert got.pop("debian-firewalld") == {"backend": "firewalld", "packages": ["firewalld"]}
    assert got.pop("el-nftables") == {"backend": "nftables", "packages": ["nftables"]}
    # An unknown backend stops at the argument check, naming the choices.
    assert got == {}, got
    assert "firewall_backend" in out and "firewalld, nftables" in out, out[-3000:]
