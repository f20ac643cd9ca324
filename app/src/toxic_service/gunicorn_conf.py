"""gunicorn configuration for `toxic-service serve` (`-c python:toxic_service.gunicorn_conf`).

- No preload_app: each worker imports the app after the fork, so the model and
  the vocabulary connections are created in the worker (TensorFlow state and
  sqlite3 connections must not cross a fork).
- Prometheus multiprocess mode: the master empties PROMETHEUS_MULTIPROC_DIR at
  start and marks each dead worker, so /metrics sums live workers only.
- Logs are one-line JSON like the app's; the app writes its own access line.
- gunicorn's own answers to malformed HTTP (bad request line, oversized
  headers) are HTML; they are rewritten as JSON errors like every other error.
- Bind, workers and systemd socket activation (LISTEN_FDS, native to gunicorn)
  come from the command line that `toxic-service serve` builds.
"""

from __future__ import annotations

import os
from pathlib import Path

wsgi_app = "toxic_service.api.wsgi:app"
preload_app = False
worker_class = "sync"
# A scoring call takes milliseconds; 30 s only catches a wedged worker.
timeout = 30
graceful_timeout = 20
keepalive = 5
# Recycle workers now and then so slow leaks (in native runtimes) never build up.
max_requests = 20_000
max_requests_jitter = 2_000
accesslog = None
errorlog = "-"
loglevel = "info"  # override with GUNICORN_CMD_ARGS="--log-level debug"
proc_name = "toxic-service"
# gunicorn >= 25 opens a control socket in ~/.gunicorn by default: several instances
# would share it, and a hardened unit has no writable home. Older versions ignore this.
control_socket_disable = True
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "toxic_service.logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "loggers": {
        # No level here: gunicorn sets gunicorn.error's level from `loglevel` itself.
        "gunicorn.error": {"handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
    },
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}


def _json_protocol_errors() -> None:
    """Answer gunicorn's own protocol errors with our JSON error body instead of its HTML page."""
    from gunicorn import util

    def write_error(sock, status_int, reason, mesg):  # noqa: ANN001 (gunicorn's signature)
        # Imported here, in the worker that answers: nothing of the app stays in the master (its RSS).
        from http import HTTPStatus

        from toxic_service.errors import GUNICORN, error_for, error_json

        # The code (and so the status) gunicorn's status maps to in the one error table.
        error = error_for(status_int, GUNICORN)
        message = mesg if error.status < 500 else None  # a 5xx's detail stays in gunicorn's log
        body = error_json(error.code, message)
        if error.status != status_int:  # a status the table lacks for gunicorn: answered as its fallback
            reason = HTTPStatus(error.status).phrase
        head = (
            f"HTTP/1.1 {error.status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"X-Content-Type-Options: nosniff\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        util.write_nonblock(sock, head + body)

    util.write_error = write_error


_json_protocol_errors()


def on_starting(server) -> None:  # noqa: ANN001
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        # Values left by a previous run would be summed into this one's.
        path = Path(directory)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()


def child_exit(server, worker) -> None:  # noqa: ANN001
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        remove_live_gauge_files(Path(directory), worker.pid)


def remove_live_gauge_files(directory: Path, pid: int) -> None:
    """What prometheus_client's `multiprocess.mark_process_dead` does, without importing it.

    Importing prometheus_client here would load it (~2.5 MB) into the master at
    the first worker recycle, a step in the master's RSS that looks like a leak.
    Only "live" gauges belong to a process's lifetime; counters and histograms
    of a dead worker stay, so totals do not drop when a worker is recycled.
    """
    for stale in directory.glob(f"gauge_live*_{int(pid)}.db"):
        stale.unlink(missing_ok=True)


def on_exit(server) -> None:  # noqa: ANN001
    # `serve` made a private metrics directory for this run: remove it with the master.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and os.environ.get("_TOXIC_SERVE_METRICS_DIR") == directory:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
