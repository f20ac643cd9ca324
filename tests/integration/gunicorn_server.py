"""The integration tests' name for tools/serve_local.py, the one server launcher (test_gunicorn.py loads this by path).

Nothing is defined here: everything is tools/serve_local.py's.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.serve_local import TOXIC_SERVICE, Server, base_env, copy_store, free_port, start  # noqa: E402

__all__ = ["TOXIC_SERVICE", "Server", "base_env", "copy_store", "free_port", "start"]
