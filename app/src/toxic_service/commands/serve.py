"""`toxic-service serve`: run the API under gunicorn with our configuration.

The command replaces itself with gunicorn (exec), so the PID a supervisor
starts is gunicorn's master: signals (HUP, TERM, USR2) and systemd socket
activation (LISTEN_FDS/LISTEN_PID, which gunicorn reads natively) work as if
gunicorn had been started directly.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click

from toxic_service.settings import InvalidSettings, Settings

# Resident memory one worker needs, by runtime: bench/service's worker VmRSS after batches up to
# max_batch (LiteRT 119 MB, Keras/TensorFlow 941 MB), rounded up.
PER_WORKER_MB = {"litert": 120, "keras": 950}
# Left for the OS, nginx, the gunicorn master and the page cache of the vocabulary file.
RESERVE_MB = 256


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, or one clear line (not a traceback) naming what is wrong."""
    try:
        return Settings(**overrides)
    except InvalidSettings as exc:
        raise click.ClickException(str(exc)) from None
    except FileNotFoundError as exc:  # TOXIC_CONFIG_FILE names a missing file
        raise click.ClickException(str(exc)) from None


def load_bundle_settings(bundle: Path | None, sqlite_path: Path | None) -> Settings:
    """`load_settings` with the --bundle / --sqlite options of `check` and `evaluate` (--sqlite implies that backend)."""
    overrides: dict[str, object] = {}
    if bundle is not None:
        overrides["bundle"] = bundle
    if sqlite_path is not None:
        overrides["sqlite_path"] = sqlite_path
        overrides["vocab_backend"] = "sqlite"
    return load_settings(**overrides)


def _mem_available_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) // 1024
                break
        else:
            return None
    except OSError:
        return None
    # Inside a container, the cgroup limit can be far below what /proc/meminfo reports.
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            available = min(available, (int(limit) - used) // (1024 * 1024))
    except (OSError, ValueError):
        pass
    return available


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(runtime: str, mem_available_mb: int | None = None, cpus: int | None = None) -> int:
    """min(2*CPUs + 1, (available memory - reserve) / per-worker estimate), at least 1."""
    cpus = cpus if cpus is not None else _cpus()
    by_cpu = 2 * cpus + 1
    available = mem_available_mb if mem_available_mb is not None else _mem_available_mb()
    if available is None:
        return by_cpu
    by_memory = (available - RESERVE_MB) // PER_WORKER_MB.get(runtime, PER_WORKER_MB["keras"])
    return max(1, min(by_cpu, by_memory))


@click.command("serve")
@click.option("--bind", "binds", multiple=True, metavar="ADDRESS",
              help="HOST:PORT or unix:PATH; repeatable. Default 127.0.0.1:8000. Ignored under systemd socket activation.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes. Default: min(2*CPUs+1, (MemAvailable - 256 MB) / per-worker size).")
@click.option("--timeout", type=click.IntRange(5, 600), default=None, help="Seconds before a silent worker is restarted.")
def command(binds: tuple[str, ...], workers: int | None, timeout: int | None) -> None:
    """Serve the API with gunicorn (settings from TOXIC_* variables; see `toxic-service config`)."""
    settings = load_settings()  # fail here, with one clear line, on a bad setting, not in every worker
    if workers is None:
        workers = default_workers(settings.runtime)
    env = dict(os.environ)
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        directory = tempfile.mkdtemp(prefix="toxic-service-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = directory
        env["_TOXIC_SERVE_METRICS_DIR"] = directory  # gunicorn_conf.on_exit removes it
    argv = [sys.executable, "-m", "gunicorn", "--config", "python:toxic_service.gunicorn_conf", "--workers", str(workers)]
    for bind in binds or ("127.0.0.1:8000",):
        argv += ["--bind", bind]
    if timeout is not None:
        argv += ["--timeout", str(timeout)]
    # The same one-line JSON as every other log line of the service.
    started = {"level": "info", "logger": "toxic_service.serve", "pid": os.getpid(), "msg": "starting gunicorn",
               "workers": workers, "bind": list(binds or ("127.0.0.1:8000",)), "runtime": settings.runtime,
               "socket_activation": bool(env.get("LISTEN_FDS"))}
    click.echo(json.dumps(started), err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)  # noqa: S606 (our own interpreter, fixed arguments)
