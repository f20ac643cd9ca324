"""Install Google's own Perspective clients for the real-client test, each in a place of the test's own.

    python tests/perspective_clients/install.py      # what `make test-app` runs first; prints what it did

- Python: google-api-python-client and its pinned dependencies (requirements.txt
  here) into a venv made with `python -m venv` (.cache/perspective-clients/venv),
  by pip with this machine's normal configuration. Never the project venv: the
  client must not see (or change) the service's own packages.
- Node: googleapis from the npm registry, `npm ci` of node/package-lock.json
  here into .cache/perspective-clients/node/node_modules (Debian's node and npm:
  tools/host_deps.sh installs them).

Each install is skipped while its stamp (the sha256 of the pinned files and the
interpreter's version) matches, so a second run only checks; a change of pins
reinstalls from scratch. A lock file keeps two runs from installing at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
REQUIREMENTS = HERE / "requirements.txt"
NODE_PROJECT = HERE / "node"
NODE_FILES = ("package.json", "package-lock.json")
CLIENT_PACKAGE = "google-api-python-client"
NODE_PACKAGE = "googleapis"
INSTALL_TIMEOUT = 900  # seconds for one pip or npm run: a slow mirror, not a hang
HOST_DEPS_HINT = "tools/host_deps.sh installs Debian's nodejs and npm (as root: sudo tools/host_deps.sh)"


def cache_dir() -> Path:
    """.cache/perspective-clients under the project's download cache (TOXIC_ASSETS_CACHE, as `make` sets it)."""
    return Path(os.environ.get("TOXIC_ASSETS_CACHE") or REPO / ".cache") / "perspective-clients"


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(argv: list[str], what: str, **kw: object) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False, **kw)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {' '.join(argv)}\n{tail}")


def python_client(log: Callable[[str], None] = print, python: str = sys.executable) -> Path:
    """The venv's python with google-api-python-client installed (installing it first unless the stamp matches)."""
    root = cache_dir()
    venv = root / "venv"
    venv_python = venv / "bin" / "python"
    stamp_file = venv / ".toxic-installed"
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout
    stamp = _digest(REQUIREMENTS.read_bytes(), version.encode())
    with _locked(root):
        if venv_python.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
            log(f"perspective clients: {CLIENT_PACKAGE} {_pip_version(venv_python)} cached in {venv}")
            return venv_python
        shutil.rmtree(venv, ignore_errors=True)  # ours: made only here
        _run([python, "-m", "venv", str(venv)], "python -m venv")
        _run([str(venv_python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)], "pip install")
        stamp_file.write_text(stamp)
        frozen = subprocess.run(
            [str(venv_python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
        ).stdout.split()
        log(f"perspective clients: installed {CLIENT_PACKAGE} {_pip_version(venv_python)} into {venv} "
            f"({len(frozen)} packages: {' '.join(frozen)})")
    return venv_python


def _pip_version(venv_python: Path) -> str:
    return subprocess.run(
        [str(venv_python), "-c", "import importlib.metadata as m; print(m.version('google-api-python-client'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()


def node_client(log: Callable[[str], None] = print) -> Path:
    """node_modules with googleapis installed by `npm ci` (unless the stamp matches). RuntimeError without node/npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise RuntimeError(f"the Node client test needs node and npm on PATH: {HOST_DEPS_HINT}")
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    root = cache_dir()
    project = root / "node"
    modules = project / "node_modules"
    stamp_file = modules / ".toxic-installed"
    sources = [(NODE_PROJECT / name).read_bytes() for name in NODE_FILES]
    stamp = _digest(*sources, node_version.encode())
    with _locked(root):
        if stamp_file.exists() and stamp_file.read_text() == stamp:
            log(f"perspective clients: {NODE_PACKAGE} {_node_version(modules)} cached in {modules} (node {node_version})")
            return modules
        shutil.rmtree(project, ignore_errors=True)  # ours: made only here
        project.mkdir(parents=True)
        for name, data in zip(NODE_FILES, sources, strict=True):
            (project / name).write_bytes(data)
        _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], "npm ci", cwd=project)
        stamp_file.write_text(stamp)
        count = len(json.loads(sources[1])["packages"]) - 1  # the root entry is the project itself
        log(f"perspective clients: installed {NODE_PACKAGE} {_node_version(modules)} into {modules} "
            f"({count} packages from package-lock.json; node {node_version})")
    return modules


def _node_version(modules: Path) -> str:
    return json.loads((modules / NODE_PACKAGE / "package.json").read_text())["version"]


if __name__ == "__main__":
    try:
        python_client()
        node_client()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        sys.exit(f"install.py: {exc}")
