"""Security of the provisioned host: open ports, the gunicorn socket, MongoDB, sshd, the unit sandbox, secrets.

Runs after the fault tests, so it checks the host as it came back from a restart.
Reproduce: TOXIC_RELIABILITY_PROFILE=short .venv/bin/pytest tests/reliability/test_security.py
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid

import pytest
import secrets_scan
from relhost import REPO, SSH_KEY

# Ports a second container tries: what the host must offer, and what a careless setup would.
PROBE_PORTS = (21, 22, 25, 80, 111, 443, 3000, 5000, 5432, 6379, 8000, 8080, 8443, 9090, 27017)
ALLOWED_OPEN = {22, 80, 443}
GUNICORN_SOCKET = "/run/toxic-service/gunicorn.sock"
EXPOSURE_LIMIT = 2.0

# Deliberate values, each with its reason (the scanner must still flag anything else).
ALLOWED_FINDINGS = {
    ("molecule/default/molecule.yml", "vault value in the clear"):
        "throwaway MongoDB passwords of the molecule test container, commented as such in place",
    ("tests/unit/test_settings.py", "password in a connection URI"):
        "a fake URI that proves the app never prints the password",
}


def _env(host) -> dict[str, str]:
    text = host.exec("cat", "/etc/toxic-service/toxic.env").stdout
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_from_a_second_container_only_ssh_http_https_answer(host, figures):
    verdicts = host.probe_ports(list(PROBE_PORTS))
    open_ports = {port for port, state in verdicts.items() if state == "open"}
    figures.add("security: ports answering a second container", ", ".join(map(str, sorted(open_ports))) or "none",
                "only 22/80/443", open_ports <= ALLOWED_OPEN and {22, 80} <= open_ports,
                f"probed {len(PROBE_PORTS)} ports; 443 {verdicts[443]} (no TLS without a domain); others "
                + ", ".join(sorted({s for p, s in verdicts.items() if p not in open_ports})))
    assert open_ports <= ALLOWED_OPEN, f"unexpected open ports: {sorted(open_ports - ALLOWED_OPEN)}"
    assert {22, 80} <= open_ports, f"ssh and http must answer: {verdicts}"


def test_the_gunicorn_socket_and_mongodb_are_not_reachable(host, figures):
    listeners = host.exec("ss", "-Hltnp").stdout.splitlines()
    tcp_ports = {int(re.search(r":(\d+)\s", line.split(None, 4)[3] + " ").group(1)): line for line in listeners}
    not_network = {port: line for port, line in tcp_ports.items() if port not in ALLOWED_OPEN and "127.0.0" not in line}
    # The socket is a unix socket: no network path at all. Locally only root and nginx's group may connect.
    mode = host.exec("stat", "-c", "%U:%G %a", GUNICORN_SOCKET).stdout.strip()
    as_nobody = host.exec("runuser", "-u", "nobody", "--", "python3", "-c",
                          f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({GUNICORN_SOCKET!r})", check=False)
    gunicorn_tcp = {port: line for port, line in tcp_ports.items() if "python" in line or "gunicorn" in line}
    backend = _env(host).get("TOXIC_VOCAB_BACKEND", "sqlite")
    mongo = tcp_ports.get(27017, "27017 not listening")
    figures.add("security: gunicorn socket", f"unix socket {mode}; as nobody: "
                f"{'refused' if as_nobody.returncode else 'CONNECTED'}; TCP listeners of python: {len(gunicorn_tcp)}",
                "not reachable", as_nobody.returncode != 0 and not gunicorn_tcp)
    figures.add("security: MongoDB", f"backend {backend}; {mongo}", "not reachable (when enabled)",
                backend != "mongodb" or 27017 not in tcp_ports or "127.0.0.1" in mongo,
                "MongoDB is not enabled on this host (sqlite backend): the enabled case is not exercised here"
                if backend != "mongodb" else "")
    assert not gunicorn_tcp, f"gunicorn listens on TCP: {gunicorn_tcp}"
    assert as_nobody.returncode != 0 and "Permission" in as_nobody.stderr, as_nobody.stderr
    assert not {p: line for p, line in not_network.items() if p == 27017}, f"MongoDB listens beyond loopback: {mongo}"


def test_sshd_refuses_root_and_password_logins(host, figures):
    def ssh(user: str, *options: str) -> subprocess.CompletedProcess[str]:
        args = host.ssh_args(user)
        return subprocess.run([*args[:-1], *options, args[-1], "true"], capture_output=True, text=True, timeout=30, check=False)

    admin = ssh(host.admin_user)
    # root's authorized_keys still holds this very key (injected at creation): only sshd's policy refuses it.
    root = ssh("root")
    password = ssh(host.admin_user, "-o", "PubkeyAuthentication=no",
                   "-o", "PreferredAuthentications=password,keyboard-interactive")
    offered = re.search(r"Permission denied \(([^)]*)\)", password.stderr)
    effective = host.exec("sshd", "-T").stdout.lower().splitlines()
    settings = {k: v for k, _, v in (line.partition(" ") for line in effective)}
    methods = offered.group(1) if offered else "?"
    refused = admin.returncode == 0 and root.returncode != 0 and offered is not None and "password" not in methods \
        and "keyboard" not in methods
    figures.add("security: sshd", f"admin key login {'ok' if admin.returncode == 0 else 'FAILED'}; root with an authorised key "
                f"{'refused' if root.returncode else 'ACCEPTED'}; methods offered: {methods}",
                "root and password refused", refused,
                f"sshd -T: permitrootlogin {settings.get('permitrootlogin')}, passwordauthentication "
                f"{settings.get('passwordauthentication')}, "
                f"kbdinteractiveauthentication {settings.get('kbdinteractiveauthentication')}")
    assert admin.returncode == 0, f"the positive control failed: {admin.stderr}"
    assert root.returncode == 255 and "Permission denied" in root.stderr, root.stderr
    assert password.returncode == 255 and offered, password.stderr
    assert "password" not in offered.group(1) and "keyboard-interactive" not in offered.group(1), offered.group(0)
    assert settings.get("permitrootlogin") == "no" and settings.get("passwordauthentication") == "no"


def test_systemd_analyze_security_exposure_is_at_most_2(host, figures):
    out = host.exec("systemd-analyze", "security", "--no-pager", "toxic-service.service").stdout
    match = re.search(r"Overall exposure level for toxic-service\.service: ([0-9.]+) (\w+)", out)
    assert match, out[-500:]
    exposure = float(match.group(1))
    figures.add("security: systemd-analyze security toxic-service", f"{exposure} {match.group(2)}", f"<= {EXPOSURE_LIMIT}",
                exposure <= EXPOSURE_LIMIT)
    assert exposure <= EXPOSURE_LIMIT


def test_no_secret_in_the_repository_or_the_hosts_logs(host, figures):
    known = secrets_scan.private_key_lines(SSH_KEY)
    env = _env(host)
    for key, value in env.items():
        match = re.search(r"://[^/:@]+:([^@]+)@", value)
        if match:
            known[f"password in {key}"] = match.group(1)
    # A comment the service must score but never log (log_text is off).
    canary = f"canary {uuid.uuid4().hex} my neighbour is a fool"
    known["a scored comment's text"] = canary.split()[1]
    sent = host.http("POST", "/detect-toxic", json.dumps({"sequence": canary}).encode(), {"Content-Type": "application/json"})
    assert sent.status == 200, sent.body

    repo_files = secrets_scan.repository_files(REPO)
    repo_findings = secrets_scan.scan_files(repo_files, REPO, known)
    allowed = [f for f in repo_findings if (f.source, f.kind) in ALLOWED_FINDINGS]
    repo_bad = [f for f in repo_findings if (f.source, f.kind) not in ALLOWED_FINDINGS]
    host.exec("journalctl", "--sync", check=False)
    logs = {
        "journal": host.exec("journalctl", "--no-pager", "-o", "cat", timeout=120).stdout,
        "/var/log/nginx/access.log": host.exec("cat", "/var/log/nginx/access.log", check=False).stdout,
        "/var/log/nginx/error.log": host.exec("cat", "/var/log/nginx/error.log", check=False).stdout,
    }
    log_bad = [f for name, text in logs.items() for f in secrets_scan.scan_text(text, name, known)]
    assert "toxic_service" in logs["journal"] or "detect" in logs["journal"], "the app's log is not in the journal"
    figures.add("security: secrets in the repository / the host's logs", f"{len(repo_bad)} / {len(log_bad)}", "0 / 0",
                not repo_bad and not log_bad,
                f"{len(repo_files)} files, {sum(len(t) for t in logs.values()) // 1024} KiB of logs; "
                f"{len(allowed)} allowed by name ({', '.join(sorted({f.source for f in allowed}))})")
    assert not repo_bad, "\n".join(map(str, repo_bad))
    assert not log_bad, "\n".join(map(str, log_bad))


@pytest.mark.parametrize("kind", [*secrets_scan.PATTERNS, "known secret"])
def test_the_secret_scan_finds_a_planted_sample(tmp_path, kind):
    """The check above can fail: each kind it looks for is found when planted (values built here, never stored)."""
    samples = {
        "private key block": "-----BEGIN OPENSSH " + "PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n",
        "AWS access key id": "aws_access_key_id = AKIA" + "QWERTYUIOPASDFGH\n",
        "GitHub token": "token: ghp_" + "a1B2" * 9 + "\n",
        "Slack token": "SLACK=xoxb-" + "1234567890-abcdef\n",
        "vault value in the clear": "---\nvault_mongodb_app_password: " + "hunter2hunter2\n",
        "password in a connection URI": "TOXIC_MONGODB_URI=mongodb://toxic_app:" + "s3cretvalue@db:27017/x\n",
        "known secret": "2026-11-22 score request text=my very own " + "planted-value-123\n",
    }
    clean = 'vault_mongodb_app_password: "CHANGE-ME-app-password"\nuri: mongodb://{{ user }}:{{ pw }}@h/\n'
    (tmp_path / "clean.txt").write_text(clean)
    (tmp_path / "leak.txt").write_text(samples[kind])
    files = sorted(tmp_path.iterdir())
    findings = secrets_scan.scan_files(files, tmp_path, {"planted": "planted-value-123"})
    assert [f.source for f in findings] == ["leak.txt"], findings
    assert findings[0].kind.startswith(kind), findings
