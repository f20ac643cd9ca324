"""Finds a real CPython 3.6 (EL7's and EL8's platform python3) for the host-side tests, if one is here."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def find_python36() -> str | None:
    """$TOXIC_TEST_PYTHON36, python3.6 on PATH, or a pyenv build; None when there is none."""
    candidates = [os.environ.get("TOXIC_TEST_PYTHON36"), shutil.which("python3.6")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates += [str(p) for p in sorted(pyenv_root.glob("versions/3.6*/bin/python3.6"))]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 6))"], capture_output=True, text=True, check=False
        )
        if probe.stdout.strip() == "True":
            return candidate
    return None


PYTHON36 = find_python36()
NO_PYTHON36 = "no Python 3.6 interpreter here (vermin is then the check)"
