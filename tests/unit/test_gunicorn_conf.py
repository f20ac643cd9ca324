"""gunicorn's master hooks: they must stay light (the master lives for weeks) and match prometheus_client."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import multiprocess
from toxic_service import gunicorn_conf

# Writes one live gauge, one plain gauge and one counter in multiprocess mode, as a worker would.
WORKER = textwrap.dedent(
    """
    import os
    from prometheus_client import Counter, Gauge
    Gauge("in_flight", "x", multiprocess_mode="livesum").set(3)
    Gauge("high_water", "x", multiprocess_mode="max").set(5)
    Counter("requests", "x").inc()
    print(os.getpid())
    """
)


def _worker_files(directory: Path) -> int:
    directory.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", WORKER], env=env, check=True, capture_output=True, text=True)
    return int(out.stdout)


def test_child_exit_removes_what_prometheus_client_removes_and_nothing_else(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    pid = _worker_files(ours)
    shutil.copytree(ours, theirs)
    before = sorted(p.name for p in ours.iterdir())
    assert f"gauge_livesum_{pid}.db" in before and f"counter_{pid}.db" in before

    gunicorn_conf.remove_live_gauge_files(ours, pid)
    multiprocess.mark_process_dead(pid, str(theirs))

    left = sorted(p.name for p in ours.iterdir())
    assert left == sorted(p.name for p in theirs.iterdir())
    assert f"gauge_livesum_{pid}.db" not in left
    assert f"counter_{pid}.db" in left and f"gauge_max_{pid}.db" in left


def test_master_hooks_do_not_load_the_app_or_prometheus_client(tmp_path):
    # A module imported by a master hook stays in the master for good: at the first
    # worker recycle that showed up as a +10 % step in the master's RSS under load.
    probe = textwrap.dedent(
        f"""
        import json, os, sys
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = {str(tmp_path)!r}
        from toxic_service import gunicorn_conf

        class Worker:
            pid = 12345

        gunicorn_conf.on_starting(None)
        gunicorn_conf.child_exit(None, Worker())
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
                                ("prometheus_client", "flask", "numpy", "toxic_service"))))
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    loaded = json.loads(out.stdout)
    assert loaded == ["toxic_service", "toxic_service.gunicorn_conf"], loaded
