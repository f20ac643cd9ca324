"""fab checks SSH host keys: an unknown key is refused before any login, a known one is accepted.

Fabric's own default (paramiko's AutoAddPolicy) takes any key, so a host that answers at the
inventory's address gets a signature made with the deploy key and then the release to run. The
server here is a paramiko SSH server run by the test on a free loopback port, with a host key made
for this test, so no known_hosts file on the machine can hold it. HOME points at the test's
directory: ~/.ssh/known_hosts is the test's own.
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import paramiko
import pytest
from fabric import Connection
from invoke.exceptions import Exit

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import fabfile  # noqa: E402


class _Server(paramiko.ServerInterface):
    def __init__(self, logins: list[str]) -> None:
        self.logins = logins

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        self.logins.append(username)  # any key is let in: the test is about the host's key, not the user's
        return paramiko.AUTH_SUCCESSFUL


class LoopbackSSH:
    """Accepts SSH connections on 127.0.0.1 with a fresh host key; records who tried to log in."""

    def __init__(self) -> None:
        self.host_key = paramiko.ECDSAKey.generate()
        self.logins: list[str] = []
        self.transports: list[paramiko.Transport] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key)
            self.transports.append(transport)
            # start_server's own thread speaks SSH; this one goes back to accepting.
            transport.start_server(event=threading.Event(), server=_Server(self.logins))

    def known_hosts_line(self, key: paramiko.PKey | None = None) -> str:
        key = key or self.host_key
        return f"[127.0.0.1]:{self.port} {key.get_name()} {key.get_base64()}\n"

    def stop(self) -> None:
        self.sock.close()
        for transport in self.transports:
            transport.close()


@pytest.fixture
def server():
    ssh = LoopbackSSH()
    yield ssh
    ssh.stop()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir(mode=0o700)
    return tmp_path


@pytest.fixture
def client_key(tmp_path) -> Path:
    path = tmp_path / "id_ecdsa"
    paramiko.ECDSAKey.generate().write_private_key_file(str(path))
    return path


def inventory_host(server: LoopbackSSH, key: Path, ssh_args: str = "") -> dict:
    """One host as fabfile.inventory_hosts() renders it from an inventory."""
    return {"name": "toxic-test", "host": "127.0.0.1", "port": server.port, "user": "deploy", "key": str(key),
            "ssh_args": ssh_args}


def connect(host: dict) -> fabfile.Target:
    target = fabfile.connection_for(host)
    fabfile.open_target(target)
    return target


def test_an_unknown_host_key_is_refused_before_any_login(server, home, client_key):
    with pytest.raises(Exit) as refused:
        connect(inventory_host(server, client_key))
    message = str(refused.value.message)
    print(message)
    assert "toxic-test" in message and f"127.0.0.1:{server.port}" in message
    assert server.host_key.fingerprint in message, "the refusal names the fingerprint to compare"
    assert f"ssh-keyscan -p {server.port} 127.0.0.1 >> {home}/.ssh/known_hosts" in message
    assert server.logins == [], "nothing was signed with our key for a host we do not know"
    assert not (home / ".ssh" / "known_hosts").exists(), "the unknown key was not remembered either"


def test_a_host_key_in_the_users_known_hosts_is_accepted(server, home, client_key):
    (home / ".ssh" / "known_hosts").write_text(server.known_hosts_line())
    target = connect(inventory_host(server, client_key))
    assert target.conn.is_connected and server.logins == ["deploy"]
    target.conn.close()


def test_the_inventorys_known_hosts_file_is_read_and_replaces_the_users(server, home, client_key):
    # A stale line for the same loopback port in ~/.ssh/known_hosts (an earlier container's) does not
    # clash: as with ssh, the file the inventory names is read instead of the user's.
    (home / ".ssh" / "known_hosts").write_text(server.known_hosts_line(paramiko.ECDSAKey.generate()))
    named = home / "inventory_known_hosts"
    named.write_text(server.known_hosts_line())
    args = f"-o UserKnownHostsFile={named} -o StrictHostKeyChecking=yes"
    target = connect(inventory_host(server, client_key, args))
    assert target.conn.is_connected
    target.conn.close()


def test_the_inventory_cannot_turn_the_check_off(server, home, client_key):
    # Ansible may be told StrictHostKeyChecking=no; fab still never takes a key it has not seen.
    args = "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no"
    with pytest.raises(Exit, match="refusing to connect"):
        connect(inventory_host(server, client_key, args))
    assert server.logins == []


def test_a_changed_host_key_is_refused_as_possibly_intercepted(server, home, client_key):
    old = paramiko.ECDSAKey.generate()
    (home / ".ssh" / "known_hosts").write_text(server.known_hosts_line(old))
    with pytest.raises(Exit) as refused:
        connect(inventory_host(server, client_key))
    message = str(refused.value.message)
    print(message)
    assert "intercepted" in message and old.fingerprint in message and server.host_key.fingerprint in message
    assert f"ssh-keygen -R '[127.0.0.1]:{server.port}'" in message
    assert server.logins == []


def test_fab_dash_H_connections_are_checked_too(server, home, client_key):
    # `fab -H user@host:port` hands the task a Connection Fabric made, with Fabric's AutoAddPolicy.
    made_by_fabric = Connection("127.0.0.1", user="deploy", port=server.port,
                                connect_kwargs={"key_filename": [str(client_key)], "look_for_keys": False,
                                                "allow_agent": False})
    (target,) = fabfile.targets_for(made_by_fabric, None, "app", None)
    with pytest.raises(Exit, match=r"refusing to connect .* none of the known_hosts files read"):
        fabfile.open_target(target)
    assert server.logins == []
