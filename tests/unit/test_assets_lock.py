"""`make assets` downloads only files whose sha256 is pinned in tools/assets.lock.

pip runs against a local file index the test makes (--no-index --find-links),
so nothing leaves the machine: a wheel listed with its right hash downloads, the
same wheel under a wrong hash is refused with our message, and a cached file
whose bytes changed is never used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("build_assets", REPO / "tools" / "build_assets.py")
build_assets = importlib.util.module_from_spec(_spec)
sys.modules["build_assets"] = build_assets
_spec.loader.exec_module(build_assets)

WHEEL = "demo_pkg-1.0-py3-none-any.whl"


def _wheel(index: Path) -> Path:
    """A minimal valid wheel (pip reads its METADATA) in a local file index."""
    index.mkdir(parents=True, exist_ok=True)
    path = index / WHEEL
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("demo_pkg/__init__.py", "")
        zf.writestr("demo_pkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n")
        zf.writestr(
            "demo_pkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr("demo_pkg-1.0.dist-info/RECORD", "")
    return path


def _lock(path: Path, digest: str) -> Path:
    path.write_text(f"# test lock\ndemo-pkg==1.0 --hash=sha256:{digest}\n")
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_right_hash_downloads_and_wrong_hash_is_refused(tmp_path):
    wheel = _wheel(tmp_path / "index")
    local = ("--no-index", "--find-links", str(tmp_path / "index"))

    good = _lock(tmp_path / "good.lock", _sha256(wheel))
    build_assets.download_pinned(good, tmp_path / "ok", [tmp_path / "ok" / WHEEL], *local)
    assert _sha256(tmp_path / "ok" / WHEEL) == _sha256(wheel)

    bad = _lock(tmp_path / "bad.lock", "0" * 64)
    with pytest.raises(SystemExit, match="does not match the sha256 pinned for it") as info:
        build_assets.download_pinned(bad, tmp_path / "out", [tmp_path / "out" / WHEEL], *local)
    assert str(bad) in str(info.value) and "0" * 64 in str(info.value)  # pip's report names the expected hash
    assert not (tmp_path / "out" / WHEEL).exists()


def test_a_cached_file_with_other_bytes_is_fetched_again_and_checked(tmp_path):
    wheel = _wheel(tmp_path / "index")
    lock = _lock(tmp_path / "good.lock", _sha256(wheel))
    cached = tmp_path / "cache" / WHEEL
    cached.parent.mkdir()
    cached.write_bytes(wheel.read_bytes() + b"tampered")
    build_assets.download_pinned(lock, cached.parent, [cached], "--no-index", "--find-links", str(wheel.parent))
    assert _sha256(cached) == _sha256(wheel)

    # With nothing to fetch it from, the tampered file is refused, not used.
    cached.write_bytes(wheel.read_bytes() + b"tampered")
    with pytest.raises(SystemExit, match="pip download failed|not the one"):
        build_assets.download_pinned(lock, cached.parent, [cached], "--no-index")


def test_every_package_is_pinned_and_the_cached_files_match():
    pinned = build_assets.read_lock(build_assets.LOCK)
    assert len(pinned) == len(build_assets.PACKAGES)
    for filename in build_assets.PACKAGES.values():
        digest = build_assets.pinned_hash(filename, pinned)
        cached = REPO / ".cache" / "pypi" / filename
        if cached.is_file():  # `make assets` ran here: the pins are the bytes it used
            assert _sha256(cached) == digest, filename


def test_a_lock_line_without_a_hash_is_refused(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text("tox-block==0.1.2\n")
    with pytest.raises(SystemExit, match=r"x\.lock:1: expected 'name==version --hash=sha256:<64 hex>'"):
        build_assets.read_lock(lock)
