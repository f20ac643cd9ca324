"""The app's packaging says what is true: licence, version, dependencies, the CLI's completion.

The wheel is built for real (pip wheel, the build backend pyproject names, as
tools/build_wheelhouse.sh does) from a copy of app/, so nothing is left in the tree.
"""

from __future__ import annotations

import ast
import email
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
import toxic_service

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app"
PYPROJECT = tomllib.loads((APP / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
# Modules tests import that come with a toolchain package (requirements.txt) as its own dependency:
# fabric's Exit is invoke's, its SSH layer paramiko; ansible-core reads YAML with PyYAML. Checked below.
# jinja2: Ansible renders the role templates with it, and tests render them the same way.
PROVIDED_BY_TOOLCHAIN = {"invoke": "fabric", "paramiko": "fabric", "yaml": "ansible", "jinja2": "ansible"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return normalize(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec).group(1))


def declared(*groups: str) -> set[str]:
    """Distribution names in the core dependencies ("") and the named extras."""
    names = set()
    for group in groups:
        specs = PROJECT["dependencies"] if group == "" else PROJECT["optional-dependencies"][group]
        names |= {requirement_name(s) for s in specs}
    return names


def every_declared() -> set[str]:
    return declared("", *PROJECT["optional-dependencies"])


def top_level_imports(root: Path) -> dict[str, set[str]]:
    """{top-level module: files importing it} for absolute imports under root."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


def distributions_for(module: str) -> set[str]:
    """The distributions that provide `module`: installed metadata, else the name itself (pymongo -> pymongo)."""
    installed = importlib.metadata.packages_distributions().get(module, [])
    return {normalize(d) for d in installed} | {normalize(module)}


def requirement_closure(dist: str) -> set[str]:
    """`dist` and every distribution it requires, transitively, as installed here."""
    seen: set[str] = set()
    todo = [normalize(dist)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [requirement_name(r) for r in requires if "extra ==" not in r]
    return seen


def third_party(imports: dict[str, set[str]], local: set[str]) -> dict[str, set[str]]:
    return {m: f for m, f in imports.items() if m not in sys.stdlib_module_names and m not in local}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    # symlinks=False: app/LICENSE links to the repository's LICENSE, as in a checkout.
    shutil.copytree(APP, work / "app", symlinks=False,
                    ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(work / "dist"),
         str(work / "app")],
        check=True, capture_output=True, text=True, timeout=600,
    )
    (built,) = (work / "dist").glob("toxic_service-*.whl")
    return built


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_string(archive.read(name).decode())


def test_wheel_says_mit_per_pep_639_and_carries_the_licence(wheel):
    meta = wheel_metadata(wheel)
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["License"] is None, "PEP 639: the expression replaces the free-text License field"
    with zipfile.ZipFile(wheel) as archive:
        (licence,) = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        text = archive.read(licence).decode()
    assert text == (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 toxic-service contributors\n")


def test_version_has_one_source(wheel):
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "toxic_service.__version__"}
    assert wheel_metadata(wheel)["Version"] == toxic_service.__version__
    assert wheel.name.startswith(f"toxic_service-{toxic_service.__version__}-")


def test_wheel_description_is_the_app_readme(wheel):
    meta = wheel_metadata(wheel)
    assert meta["Description-Content-Type"] == "text/markdown"
    body = meta.get_payload()
    assert body.strip() == (APP / "README.md").read_text().strip()
    for must in ("pip install", "toxic-service serve", "POST /detect-toxic", "TOXIC_", "_TOXIC_SERVICE_COMPLETE"):
        assert must in body, f"app/README.md should cover {must!r}"


def test_every_package_app_src_imports_is_declared():
    imports = third_party(top_level_imports(APP / "src"), local={"toxic_service"})
    assert {"click", "werkzeug", "flask", "numpy", "pymongo"} <= set(imports), "the import scan found too little"
    undeclared = {m: sorted(f) for m, f in imports.items() if not distributions_for(m) & every_declared()}
    assert not undeclared, f"imported by app/src but not in app/pyproject.toml: {undeclared}"


def test_pymongo_is_the_mongodb_extra_only():
    assert "pymongo" not in declared("")
    assert declared("mongodb") == {"pymongo"}
    assert "toxic-service[mongodb]" in PROJECT["optional-dependencies"]["test"]


CLIENTS_DIR = "tests/perspective_clients/"


def test_the_test_extra_covers_what_tests_import():
    # The repository's own modules that tests put on sys.path: tests/, tools/, the top level (fabfile, bench).
    local = {p.stem for d in (REPO / "tests", REPO / "tools") for p in d.rglob("*.py")}
    local |= {p.stem for p in REPO.glob("*.py")} | {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()}
    imports = third_party(top_level_imports(REPO / "tests"), local=local | {"toxic_service"})
    # Google's client code runs in a venv of its own with its own pins (tests/perspective_clients/requirements.txt):
    # what only it imports is that file's to declare, not app[test]'s.
    clients = {m for m, files in imports.items() if all(f.startswith(CLIENTS_DIR) for f in files)}
    assert "googleapiclient" in clients, "the Perspective client scan found nothing: did the client move?"
    imports = {m: f for m, f in imports.items() if m not in clients}
    assert {"jsonschema", "schemathesis", "pytest", "selenium"} <= set(imports), "the import scan found too little"
    toolchain = {requirement_name(line.split("#")[0]) for line in (REPO / "requirements.txt").read_text().splitlines()
                 if line.split("#")[0].strip()}
    available = every_declared() | toolchain
    provided = {
        m for m, by in PROVIDED_BY_TOOLCHAIN.items() if by in toolchain and distributions_for(m) & requirement_closure(by)
    }
    missing = {m: sorted(f) for m, f in imports.items() if not distributions_for(m) & available and m not in provided}
    assert not missing, f"tests import these, but neither app[test] (or another extra) nor requirements.txt has them: {missing}"
    assert {"jsonschema", "schemathesis"} <= declared("test")


def test_shell_completion_works_as_documented():
    assert PROJECT["scripts"] == {"toxic-service": "toxic_service.cli:main"}
    script = Path(sys.executable).parent / "toxic-service"
    if not script.is_file():
        pytest.skip(f"no {script}: the app is not installed in this interpreter's environment")
    env = {**os.environ, "_TOXIC_SERVICE_COMPLETE": "bash_source"}
    source = subprocess.run([str(script)], env=env, capture_output=True, text=True, check=True, timeout=60).stdout
    assert "_toxic_service_completion()" in source and "complete -o nosort -F _toxic_service_completion toxic-service" in source
    env = {**os.environ, "_TOXIC_SERVICE_COMPLETE": "bash_complete", "COMP_WORDS": "toxic-service vo", "COMP_CWORD": "1"}
    words = subprocess.run([str(script)], env=env, capture_output=True, text=True, check=True, timeout=60).stdout
    assert words.split() == ["plain,vocab"]
    for doc in (APP / "README.md", REPO / "README.md"):
        assert '_TOXIC_SERVICE_COMPLETE=bash_source toxic-service' in doc.read_text(), f"{doc} documents completion"
