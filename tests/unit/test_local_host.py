"""tools/local_host.py: the parts that need no Docker (apt sources, key injection, errors).

The container itself is exercised by `molecule test -s local`.
"""

from __future__ import annotations

import importlib.util
import io
import re
import shutil
import sys
import tarfile
import threading
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "tools" / "local_host.py"
_spec = importlib.util.spec_from_file_location("local_host", _PATH)
local_host = importlib.util.module_from_spec(_spec)
sys.modules["local_host"] = local_host
_spec.loader.exec_module(local_host)

DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: https://vendor.example/apt
Suites: nodistro
Components: main

Types: deb-src
URIs: http://mirror.example/debian
Suites: bookworm
Components: main

Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
"""


def make_apt_dir(tmp_path: Path, deb822: str = "", one_line: str = "") -> Path:
    (tmp_path / "sources.list.d").mkdir()
    if deb822:
        (tmp_path / "sources.list.d" / "debian.sources").write_text(deb822)
    if one_line:
        (tmp_path / "sources.list").write_text(one_line)
    (tmp_path / "sources.list.d" / "vendor.list.disabled").write_text("deb http://ignored.example/ bookworm main\n")
    return tmp_path


def test_only_enabled_binary_bookworm_entries_are_kept(tmp_path: Path) -> None:
    sources = local_host.host_apt_sources(make_apt_dir(tmp_path, deb822=DEB822))
    assert [(s.uri, s.suites) for s in sources] == [
        ("http://mirror.example/debian", ("bookworm", "bookworm-updates")),
        ("http://mirror.example/debian-security", ("bookworm-security",)),
    ]
    assert local_host.main_mirror(sources) == "http://mirror.example/debian"


def test_one_line_format_with_options_is_understood(tmp_path: Path) -> None:
    text = "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n# deb http://x/ bookworm main\n"
    sources = local_host.host_apt_sources(make_apt_dir(tmp_path, one_line=text))
    assert [(s.uri, s.suites, s.components) for s in sources] == [("http://mirror.example/debian", ("bookworm",), ("main",))]


def test_no_bookworm_source_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOXIC_DEBIAN_MIRROR", raising=False)
    sources = local_host.host_apt_sources(make_apt_dir(tmp_path, one_line="deb http://x.example/ubuntu noble main\n"))
    with pytest.raises(local_host.LocalHostError, match="TOXIC_DEBIAN_MIRROR"):
        local_host.main_mirror(sources)
    monkeypatch.setenv("TOXIC_DEBIAN_MIRROR", "http://override.example/debian")
    assert local_host.main_mirror(sources) == "http://override.example/debian"


def test_rendered_sources_name_the_debian_keyring(tmp_path: Path) -> None:
    sources = local_host.host_apt_sources(make_apt_dir(tmp_path, deb822=DEB822))
    text = local_host.render_sources(sources, local_host.main_mirror(sources))
    assert local_host.parse_deb822(text) == sources
    assert text.count("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg") == 2


def test_recipe_hash_changes_with_the_mirror(tmp_path: Path) -> None:
    sources = local_host.host_apt_sources(make_apt_dir(tmp_path, deb822=DEB822))
    first = local_host.recipe_hash(sources, "http://a.example/debian")
    assert first == local_host.recipe_hash(sources, "http://a.example/debian")
    assert first != local_host.recipe_hash(sources, "http://b.example/debian")


def test_injected_key_has_modes_sshd_accepts() -> None:
    with tarfile.open(fileobj=io.BytesIO(local_host.authorized_keys_tar("ssh-ed25519 AAAA test"))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members[".ssh"].isdir() and members[".ssh"].mode == 0o700
        assert members[".ssh/authorized_keys"].mode == 0o600
        assert tar.extractfile(".ssh/authorized_keys").read() == b"ssh-ed25519 AAAA test\n"


@pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed")
def test_missing_docker_engine_says_how_to_start_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert local_host.main(["status"]) == 2
    assert "dockerd" in capsys.readouterr().err


def test_an_instance_names_its_network_and_probe_after_itself_and_publishes_its_ports() -> None:
    default = local_host.Instance()
    assert (default.name, default.network, default.probe_container) == ("toxic-local", "toxic-local-net", "toxic-local-probe")
    assert default.published == {8080: 80, 8443: 443, 2222: 22}
    fab = local_host.Instance("toxic-fab", 18080, 18443, 12222)
    assert (fab.network, fab.probe_container, fab.published) == ("toxic-fab-net", "toxic-fab-probe",
                                                                 {18080: 80, 18443: 443, 12222: 22})


@pytest.mark.parametrize(("args", "message"), [
    (("Toxic_Fab", 18080, 18443, 12222), "--name 'Toxic_Fab'"),
    (("toxic-fab", 18080, 18080, 12222), "must differ"),
    (("toxic-fab", 18080, 18443, 70000), "1..65535"),
])
def test_a_bad_instance_is_refused_with_what_is_wrong(args: tuple, message: str) -> None:
    with pytest.raises(local_host.LocalHostError, match=re.escape(message)):
        local_host.Instance(*args)


def test_the_command_line_refuses_a_bad_name_before_touching_docker(capsys: pytest.CaptureFixture[str]) -> None:
    assert local_host.main(["--name", "other", "status"]) == 2
    assert "--name 'other'" in capsys.readouterr().err


def test_instances_editing_known_hosts_at_once_keep_each_others_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_host, "SSH_DIR", tmp_path)
    monkeypatch.setattr(local_host, "KNOWN_HOSTS", tmp_path / "known_hosts")
    instances = [local_host.Instance(f"toxic-t{i}", 20000 + 3 * i, 20001 + 3 * i, 20002 + 3 * i) for i in range(16)]

    def churn(instance) -> None:
        for n in range(40):  # each instance comes up (new key) and goes down again, over and over
            instance._edit_known_hosts(f"[127.0.0.1]:{instance.ssh_port} ssh-ed25519 KEY{n}\n")

    threads = [threading.Thread(target=churn, args=(instance,)) for instance in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    lines = (tmp_path / "known_hosts").read_text().splitlines()
    assert sorted(lines) == sorted(f"[127.0.0.1]:{i.ssh_port} ssh-ed25519 KEY39" for i in instances)
    instances[0].forget_host_key()
    assert len((tmp_path / "known_hosts").read_text().splitlines()) == len(instances) - 1
