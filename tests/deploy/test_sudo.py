"""What the deploy user (toxic_deploy_user, the login fab uses) may do as root on a provisioned host.

Its sudo drop-in (roles/base, /etc/sudoers.d/toxic-deploy) allows toxic-release's subcommands and
nothing else; sudoers' `*` would pass any further argument, so toxic-release itself refuses its
test hooks as root. Checked in the deploy suite's container as the host's own sudo decides, run
as the deploy user (docker exec -u). The admin user, Ansible's, keeps full sudo.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from tools.fabhost import ROOT, FabHost

DEPLOY_USER = "toxic-deploy"  # inventory/local's toxic_deploy_user
ADMIN_USER = "deploy"  # inventory/local's toxic_admin_user
MARKER = "/tmp/toxic-sudo-probe"


def test_the_sudoers_drop_in_is_valid_and_root_only(fab_host: FabHost) -> None:
    assert "parsed OK" in fab_host.exec("visudo", "-cf", "/etc/sudoers.d/toxic-deploy")
    assert fab_host.exec("stat", "-c", "%U:%G %a", "/etc/sudoers.d/toxic-deploy").strip() == "root:root 440"


def test_the_deploy_user_runs_toxic_release_through_sudo(fab_host: FabHost) -> None:
    for command in (["toxic-release", "status"], ["/usr/local/sbin/toxic-release", "status", "--json"]):
        result = fab_host.exec_as(DEPLOY_USER, "sudo", "-n", *command)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "current:" in fab_host.exec_as(DEPLOY_USER, "sudo", "-n", "toxic-release", "status").stdout


@pytest.mark.parametrize(
    "command",
    [
        ["/bin/sh", "-c", f"id > {MARKER}"],
        ["sh", "-c", f"id > {MARKER}"],
        ["cat", "/etc/shadow"],
        ["-s"],  # the user's shell as root
        ["-e", "/etc/sudoers.d/toxic-deploy"],  # sudoedit
        ["journalctl", "--vacuum-time=1s"],
        ["/usr/local/sbin/toxic-release"],  # no subcommand: not in the list either
    ],
)
def test_sudo_refuses_the_deploy_user_anything_else(fab_host: FabHost, command: list[str]) -> None:
    result = fab_host.exec_as(DEPLOY_USER, "sudo", "-n", *command)
    assert result.returncode != 0, f"sudo {' '.join(command)} was allowed: {result.stdout}"
    assert "root:" not in result.stdout, "/etc/shadow was read"
    assert fab_host.exec("sh", "-c", f"test -e {MARKER} && echo present || echo absent").strip() == "absent"


@pytest.mark.parametrize(
    "hook",
    [
        ["status", "--systemctl", f"/bin/sh -c id>{MARKER}"],
        ["restart", "--systemctl", f"/bin/sh -c id>{MARKER}"],
        ["fingerprint", "--wheelhouse", "/tmp", "--python", f"/bin/sh -c id>{MARKER}"],
        ["status", "--config", "/tmp/release.json"],
        ["status", "--root", "/tmp"],
    ],
)
def test_toxic_release_refuses_its_test_hooks_under_sudo(fab_host: FabHost, hook: list[str]) -> None:
    result = fab_host.exec_as(DEPLOY_USER, "sudo", "-n", "toxic-release", *hook)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is refused when running as root" in result.stderr, result.stderr
    assert fab_host.exec("sh", "-c", f"test -e {MARKER} && echo present || echo absent").strip() == "absent"


def test_the_admin_user_keeps_full_sudo(fab_host: FabHost) -> None:
    result = fab_host.exec_as(ADMIN_USER, "sudo", "-n", "id", "-u")
    assert result.returncode == 0 and result.stdout.strip() == "0", result.stdout + result.stderr


def build_wheel(directory: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A minimal, valid py3-none-any wheel (RECORD with real hashes)."""
    info = f"{name}-{version}.dist-info"
    files = {**files, f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(text.encode())}" for path, text in files.items()] + [f"{info}/RECORD,,"]
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


PTH_MARKER = "/tmp/toxic-pth-probe"


def test_a_wheels_code_never_runs_as_root_during_prepare(fab_host: FabHost, tmp_path: Path) -> None:
    """A dependency wheel may carry a .pth file, which every start of the env's python runs: the deploy
    user's code, to run as the service user at most. prepare starts that python (pip) after installing it."""
    house = tmp_path / "wheelhouse"
    house.mkdir()
    build_wheel(house, "toxic_service", "0.0.1", {"toxic_service/__init__.py": "# sudo probe\n"})
    build_wheel(house, "pthprobe", "1.0", {"pthprobe.pth": f"import os; open({PTH_MARKER!r}, 'w').write(str(os.getuid()))\n"})
    (house / "SHA256SUMS").write_text("".join(f"{hashlib.sha256(w.read_bytes()).hexdigest()}  {w.name}\n"
                                              for w in sorted(house.glob("*.whl"))))
    upload = f"/home/{DEPLOY_USER}/pth-probe"
    fab_host.exec("rm", "-rf", upload, PTH_MARKER)
    fab_host.docker_cp(house, upload)
    fab_host.exec("chown", "-R", f"{DEPLOY_USER}:{DEPLOY_USER}", upload)
    result = fab_host.exec_as(DEPLOY_USER, "sudo", "-n", "toxic-release", "prepare", "--wheelhouse", upload, timeout=300)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        marker = fab_host.exec("sh", "-c", f"cat {PTH_MARKER} 2>/dev/null || echo absent").strip()
        assert marker not in ("0", "absent"), f"the wheel's .pth ran as uid {marker}" if marker == "0" else marker
        toxic_uid = fab_host.exec("id", "-u", "toxic").strip()
        assert marker == toxic_uid, f"ran as uid {marker}, not the service user's {toxic_uid}"
        release = result.stdout.strip()
        owners = fab_host.exec("sh", "-c", f"find {release}/lib $(readlink -f {release}/env) ! -user root | head -3")
        assert owners.strip() == "", f"files the build left to the service user: {owners}"
    finally:
        if result.returncode == 0:  # a prepared, never activated release, and its env: not the suite's state
            release = result.stdout.strip()
            env = json.loads(fab_host.exec("cat", f"{release}/RELEASE.json"))["env"]
            fab_host.exec("rm", "-rf", release, f"{ROOT}/shared/envs/{env}")
        fab_host.exec("rm", "-rf", upload, PTH_MARKER)
