"""The cost of the API key and quota check per request (bench/service reports it; issue 12's benchmark).

What a worker does for a keyed request, through the service's own code
(toxic_service.apikeys.gate.Gate.check): one stat() of the keys file, one
SHA-256 of the presented key, a dict lookup with a constant-time compare, one
SQLite UPDATE on the shared bucket file (WAL). Timed in one process, and in
several processes at once on the same key, as gunicorn's workers share it.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import median, percentile

HUGE_QPS = 100_000  # the bench measures the check, not refusals: the bucket never runs dry


def _gate(keys_file: Path) -> Any:
    from toxic_service.apikeys.gate import Gate
    from toxic_service.settings import Settings

    return Gate(Settings(api_keys_file=keys_file, api_keys_required=True))


def _time_checks(keys_file: Path, key: str, n: int) -> list[float]:
    gate = _gate(keys_file)
    gate.check(key, True)  # opens the bucket file and loads the keys
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        verdict = gate.check(key, True)
        times.append(time.perf_counter() - t0)
        if verdict.outcome != "accepted":
            raise RuntimeError(f"bench: the key check answered {verdict.outcome}")
    return times


def _contending(args: tuple[str, str, int, Any]) -> float:
    keys_file, key, n, barrier = args
    barrier.wait(30)
    t0 = time.perf_counter()
    _time_checks(Path(keys_file), key, n)
    return (time.perf_counter() - t0) / n


def measure(work: Path, n: int = 3000, processes: int = 2) -> dict[str, float]:
    """Seconds per check: median and p95 in one process, mean per check with `processes` at once, the stat alone."""
    from toxic_service.apikeys import keyfile

    with tempfile.TemporaryDirectory(prefix="apikeys-", dir=work) as tmp:
        keys_file = Path(tmp) / "api-keys.json"
        key = keyfile.create(keys_file, "bench", HUGE_QPS)
        single = _time_checks(keys_file, key, n)
        t0 = time.perf_counter()
        for _ in range(n):
            os.stat(keys_file)
        stat_seconds = (time.perf_counter() - t0) / n
        with multiprocessing.Manager() as manager:
            barrier = manager.Barrier(processes)
            with multiprocessing.get_context("spawn").Pool(processes) as pool:
                shared = pool.map(_contending, [(str(keys_file), key, n, barrier)] * processes)
    return {
        "median": median(single),
        "p95": percentile(single, 95),
        "stat": stat_seconds,
        "contended_mean": sum(shared) / len(shared),
        "processes": processes,
        "n": n,
    }
