"""fab's wheelhouse check: what the app wheel needs on the host's Python, markers included."""

import sys
import zipfile
from pathlib import Path

import pytest
from invoke.exceptions import Exit

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import fabfile  # noqa: E402


def app_wheel(directory: Path, *requires: str) -> Path:
    wheel = directory / "toxic_service-0.1.0-py3-none-any.whl"
    metadata = "Metadata-Version: 2.1\nName: toxic-service\nVersion: 0.1.0\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("toxic_service-0.1.0.dist-info/METADATA", metadata)
    return wheel


def house(directory: Path, *names: str) -> Path:
    path = directory / "wheelhouse"
    path.mkdir()
    for name in names:
        (path / name).write_bytes(b"")
    return path


def test_a_marker_for_another_python_is_not_required(tmp_path):
    wheels = house(tmp_path, "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl", "flask-3.1.0-py3-none-any.whl",
                   "zstd-1.0-cp39-abi3-manylinux_2_28_x86_64.whl")
    app = app_wheel(tmp_path, "numpy>=1.24", "flask>=3", "tomli>=2; python_version < '3.11'", "pyarrow; extra == 'import'")
    assert fabfile.wheelhouse_python({p.name: p for p in wheels.iterdir()}) == "3.11"
    assert sorted(fabfile.release_wheels(app, wheels)) == sorted([*(p.name for p in wheels.iterdir()), app.name])


def test_a_missing_dependency_is_named(tmp_path):
    wheels = house(tmp_path, "numpy-2.4.6-cp310-cp310-manylinux_2_28_x86_64.whl")
    app = app_wheel(tmp_path, "numpy>=1.24", "tomli>=2; python_version < '3.11'")
    with pytest.raises(Exit, match="needs tomli"):
        fabfile.release_wheels(app, wheels)
