"""playbooks/preflight.yml against a real SSH server on loopback: the first converge
(admin user refused, root let in) prints no red error text, and a host without
Python 3, or with one older than 3.6, fails at preflight naming the host.

The server is a small paramiko SSH server run by this test (no sshd on the machine,
and no container): it lets `root` in with the test's key, refuses every other user
(as a fresh cloud host refuses the not-yet-created admin user), and runs each command
with /bin/sh under a PATH the test chooses, so that "no python3" and "python3 is 3.5"
can be staged without touching the machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import paramiko
import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))


class _Server(paramiko.ServerInterface):
    def __init__(self, allowed_key: paramiko.PKey) -> None:
        self.allowed_key = allowed_key

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if username == "root" and key == self.allowed_key:
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class StubSSH:
    """Loopback SSH server: one thread per connection, one per command."""

    def __init__(self, tmp: Path, path_dirs: list[str]) -> None:
        self.host_key = paramiko.RSAKey.generate(2048)
        self.client_key_file = tmp / "id_rsa"
        client_key = paramiko.RSAKey.generate(2048)
        client_key.write_private_key_file(str(self.client_key_file))
        self.client_key = paramiko.RSAKey(filename=str(self.client_key_file))
        self.env = {"PATH": ":".join(path_dirs), "HOME": str(tmp), "LANG": "C.UTF-8"}
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        transport.add_server_key(self.host_key)
        server = _Server(self.client_key)
        server.check_channel_exec_request = lambda channel, command: self._exec(channel, command)
        try:
            transport.start_server(server=server)
        except (paramiko.SSHException, EOFError):
            return
        while transport.is_active() and not self.stopping:
            channel = transport.accept(1)
            if channel is None:
                continue

    def _exec(self, channel: paramiko.Channel, command: bytes) -> bool:
        threading.Thread(target=self._run, args=(channel, command.decode()), daemon=True).start()
        return True

    def _run(self, channel: paramiko.Channel, command: str) -> None:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.env["HOME"],
        )

        def feed() -> None:
            while True:
                data = channel.recv(65536)
                if not data:
                    break
                proc.stdin.write(data)
                proc.stdin.flush()
            proc.stdin.close()

        def drain_stderr() -> None:
            for chunk in iter(lambda: proc.stderr.read1(65536), b""):
                channel.sendall_stderr(chunk)

        threads = [threading.Thread(target=feed, daemon=True), threading.Thread(target=drain_stderr, daemon=True)]
        for thread in threads:
            thread.start()
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            channel.sendall(chunk)
        threads[1].join(30)
        channel.send_exit_status(proc.wait())
        channel.close()

    def stop(self) -> None:
        self.stopping = True
        self.sock.close()


def run_preflight(tmp: Path, ssh: StubSSH, playbook: Path, *args: str) -> subprocess.CompletedProcess:
    host = {
        "ansible_host": "127.0.0.1",
        "ansible_port": ssh.port,
        "ansible_user": "{{ toxic_admin_user }}",
        "ansible_ssh_private_key_file": str(ssh.client_key_file),
        "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR",
    }
    shared = {
        "toxic_vocab_backend": "sqlite",
        "toxic_python_runtime": "system",
        "toxic_root": "/srv/toxic-service",
        "toxic_admin_user": "deploy",
        "toxic_admin_keys": ["ssh-ed25519 AAAA test"],
        "toxic_bootstrap_user": "root",
        "toxic_server_name": "_",
        "toxic_wheelhouse": "/nonexistent",
        "toxic_bundle_src": "/nonexistent",
        "toxic_vocab_src": "/nonexistent",
    }
    inventory = {"all": {"hosts": {"fresh-host": host}, "vars": shared}}
    (tmp / "inventory.json").write_text(json.dumps(inventory))
    env = dict(os.environ)
    env.update(
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
        ANSIBLE_PIPELINING="1",
        # Each test's own control sockets: nothing shared with other runs.
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(tmp / "cp"),
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
    )
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(tmp / "inventory.json"), str(playbook), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def stub(tmp_path):
    servers: list[StubSSH] = []

    def make(path_dirs: list[str]) -> StubSSH:
        server = StubSSH(tmp_path, path_dirs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def fake_bin(tmp: Path, name: str, script: str | None) -> str:
    """A directory with the shell tools the probes use and, optionally, a fake python3."""
    bin_dir = tmp / name
    bin_dir.mkdir()
    for tool in ("sh", "echo", "sleep", "mkdir", "rm", "cat", "chmod", "ls", "id", "env"):
        target = Path("/bin") / tool
        if target.exists():
            (bin_dir / tool).symlink_to(target)
    if script is not None:
        python = bin_dir / "python3"
        python.write_text(script)
        python.chmod(0o755)
    return str(bin_dir)


PREFLIGHT = REPO / "playbooks" / "preflight.yml"


@pytest.mark.parametrize("args", [(), ("--check",)], ids=["run", "check-mode"])
def test_first_converge_falls_back_to_root_without_red_error_text(tmp_path, stub, args):
    ssh = stub([str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    result = run_preflight(tmp_path, ssh, PREFLIGHT, *args)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "[ERROR]" not in out, out
    assert "fatal:" not in out, out
    assert "UNREACHABLE" not in out, out
    assert "Permission denied" not in out, out
    assert "TASK [Fall back to the bootstrap user]" in out
    assert "ok: [fresh-host]" in out
    assert "skipping: [fresh-host]" not in out.split("TASK [Try the bootstrap user]")[1].split("TASK")[0]


def test_host_without_python_fails_naming_host_and_what_to_install(tmp_path, stub):
    ssh = stub([fake_bin(tmp_path, "nopython", None)])
    result = run_preflight(tmp_path, ssh, PREFLIGHT)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "fresh-host has no Python 3 (neither python3 nor /usr/libexec/platform-python)" in out, out[-4000:]
    assert "apt-get install python3" in out


def test_host_python_older_than_36_fails_naming_host_and_version(tmp_path, stub):
    # What Python 3.5's `print("python %d.%d %s" % ...)` would print for the probe.
    old = "#!/bin/sh\necho 'python 3.5 /usr/bin/python3.5'\n"
    ssh = stub([fake_bin(tmp_path, "oldpython", old)])
    result = run_preflight(tmp_path, ssh, PREFLIGHT)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "fresh-host has Python 3.5 (/usr/bin/python3.5), older than 3.6" in out, out[-4000:]
