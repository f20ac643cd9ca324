"""The nftables rate limit on new SSH connections, per IPv4 address and per IPv6 /64, as nft reads it.

Ansible renders roles/firewall/templates/nftables.conf.j2 with the role's own defaults, and this
machine's `nft -c -f` checks the result the way the role does before writing /etc/nftables.conf
(`-c`: parsed and evaluated by the kernel in a batch that is never committed; nothing is loaded).
Needs nftables (apt-get install nftables) and CAP_NET_ADMIN; without them the test skips saying so.
"""

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
ROLE = REPO / "roles" / "firewall"
NFT = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))


def _nft_check_unusable() -> str | None:
    """Why `nft -c` cannot run here, or None when it can."""
    if NFT is None:
        return "no nft binary here (apt-get install nftables)"
    probe = subprocess.run([NFT, "-c", "add table inet toxic_check_probe"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"nft -c cannot run here (needs CAP_NET_ADMIN): {probe.stderr.strip()}"
    return None


UNUSABLE = _nft_check_unusable()
pytestmark = pytest.mark.skipif(UNUSABLE is not None, reason=UNUSABLE or "")


def render(tmp: Path, template: Path = ROLE / "templates" / "nftables.conf.j2", **overrides) -> str:
    """The template rendered by Ansible with the role's defaults (plus `overrides`) on localhost."""
    out = tmp / "nftables.conf"
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars_files": [str(ROLE / "defaults" / "main.yml")],
             "tasks": [{"ansible.builtin.template": {"src": str(template), "dest": str(out), "mode": "0600"}}]}]
    (tmp / "play.yml").write_text(yaml.safe_dump(play))
    (tmp / "extra.json").write_text(json.dumps({"ansible_python_interpreter": sys.executable, **overrides}))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_HOME=str(tmp / "ansible-home"), ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"))
    result = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", str(tmp / "play.yml"), "-e", f"@{tmp / 'extra.json'}"],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return out.read_text()


def nft_check(tmp: Path, text: str) -> None:
    path = tmp / "candidate.nft"
    path.write_text(text)
    result = subprocess.run([NFT, "-c", "-f", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"nft -c refused the rendered ruleset:\n{result.stderr}\n{text}"


def rules(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def limit_rules(text: str) -> dict[str, str]:
    """family -> the rule that drops new connections to port 22 over the rate, keyed by what it counts."""
    found = {}
    for rule in rules(text):
        match = re.fullmatch(r"tcp dport 22 ct state new update @\w+ \{ (ip6? saddr.*?) limit rate over (\S+) "
                             r"burst (\d+) packets \} drop", rule)
        if match:
            found[match.group(1)] = f"{match.group(2)} burst {match.group(3)}"
    return found


def test_new_ssh_connections_are_rate_limited_per_ipv4_address_and_ipv6_64(tmp_path):
    # An IPv6 source restriction too, so both families appear elsewhere in the ruleset nft checks.
    text = render(tmp_path, firewall_source_restricted_ports=[{"port": 27017, "sources": ["192.0.2.7", "2001:db8::7"]}])
    nft_check(tmp_path, text)
    assert limit_rules(text) == {
        "ip saddr": "10/minute burst 20",
        "ip6 saddr and ffff:ffff:ffff:ffff::": "10/minute burst 20",
    }, text
    # The drops come before anything that accepts port 22, or they would never see a packet.
    ordered = rules(text)
    first_accept = next(i for i, rule in enumerate(ordered) if rule.startswith("tcp dport {") and rule.endswith("accept"))
    assert all(ordered.index(rule) < first_accept for rule in ordered if "limit rate over" in rule and "dport 22" in rule)
    # Each family's counter set holds its own address type (nft refuses a mismatch; this names which).
    assert "set ssh_clients4 { type ipv4_addr;" in text and "set ssh_clients6 { type ipv6_addr;" in text


def test_the_rate_and_burst_come_from_the_variables_and_empty_turns_the_limit_off(tmp_path):
    text = render(tmp_path, firewall_ssh_rate_limit="3/second", firewall_ssh_rate_limit_burst=5)
    nft_check(tmp_path, text)
    assert set(limit_rules(text).values()) == {"3/second burst 5"}, text
    (tmp_path / "off").mkdir()
    off = render(tmp_path / "off", firewall_ssh_rate_limit="")
    nft_check(tmp_path, off)
    assert limit_rules(off) == {} and "ssh_clients" not in off
    assert "tcp dport { 22, 80, 443 } accept" in rules(off)
