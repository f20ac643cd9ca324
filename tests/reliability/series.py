"""The load run's time series: RSS growth per process, the CSV and the PNG plot."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any


def _role(label: str) -> str:
    """'gunicorn worker 1234' -> 'gunicorn worker'."""
    return label.rsplit(" ", 1)[0]


def rss_series(samples: list[dict[str, Any]], t0: float) -> dict[str, list[tuple[float, int]]]:
    """label -> [(seconds since t0, RSS kB)], plus 'service total' (gunicorn master + workers) per sample."""
    series: dict[str, list[tuple[float, int]]] = {}
    for sample in samples:
        t = sample["t"] - t0
        total = 0
        for label, kb in sample["rss_kb"].items():
            series.setdefault(label, []).append((t, kb))
            if label.startswith("gunicorn"):
                total += kb
        if total:
            series.setdefault("service total", []).append((t, total))
        if "container_usage_kb" in sample:
            series.setdefault("container memory usage", []).append((t, sample["container_usage_kb"]))
    return series


def growth(points: list[tuple[float, int]], start: float, end: float, window: float) -> float | None:
    """Relative change of the median RSS from [start, start+window] to [end-window, end]; None if a window is empty."""
    first = [kb for t, kb in points if start <= t <= start + window]
    last = [kb for t, kb in points if end - window <= t <= end]
    if not first or not last:
        return None
    base = statistics.median(first)
    return (statistics.median(last) - base) / base if base else None


def rss_growth(samples: list[dict[str, Any]], t0: float, duration: float) -> dict[str, float | None]:
    """Growth of each process over its own lifetime, after a warm-up, and of two run-long aggregates.

    gunicorn recycles a worker after ~20,000 requests (about 80 s at 500 req/s),
    so a worker is judged from its first to its last samples, skipping its
    first seconds (a fresh worker is still loading the model), if it lived at
    least 30 s; else None. "largest gunicorn worker" (the biggest worker at each
    sample) is judged over the whole run: it grows if each generation of
    workers ends bigger than the last. "service total" drops whenever a grown
    worker is recycled; it is reported, not judged.
    """
    warmup = min(10.0, 0.15 * duration)
    series = rss_series(samples, t0)
    largest: dict[float, int] = {}
    for label, points in series.items():
        if label.startswith("gunicorn worker"):
            for t, kb in points:
                largest[t] = max(largest.get(t, 0), kb)
    if largest:
        series["largest gunicorn worker"] = sorted(largest.items())
    result: dict[str, float | None] = {}
    for label, points in series.items():
        start = points[0][0] + warmup
        end = points[-1][0]
        life = end - start
        result[label] = growth(points, start, end, max(6.0, 0.2 * life)) if life >= 30.0 else None
    return result


def stack_rss_kb(sample: dict[str, Any]) -> int:
    """The service's RSS in one sample: nginx master + workers, gunicorn master + workers (kB)."""
    return sum(kb for label, kb in sample["rss_kb"].items() if label.startswith(("nginx ", "gunicorn ")))


def stack_rss_peak(samples: list[dict[str, Any]], t0: float) -> tuple[int, float, int]:
    """(peak kB, its time in seconds since t0, how many samples saw a gunicorn process) over the samples."""
    seen = [s for s in samples if any(label.startswith("gunicorn ") for label in s["rss_kb"])]
    if not seen:
        return 0, 0.0, 0
    peak = max(seen, key=stack_rss_kb)
    return stack_rss_kb(peak), peak["t"] - t0, len(seen)


def oom_kills_during(samples: list[dict[str, Any]]) -> int | None:
    """OOM kills the container's cgroup counted between the first and the last sample; None if it was not readable."""
    counts = [s["container_oom_kills"] for s in samples if "container_oom_kills" in s]
    return counts[-1] - counts[0] if len(counts) >= 2 else None


def write_csv(result: dict[str, Any], path: Path) -> None:
    """Two tables in one file: latency per interval, then RSS per sample (kB)."""
    series = rss_series(result["rss"], result["t0"])
    labels = sorted(series)
    with path.open("w", newline="") as stream:
        out = csv.writer(stream)
        out.writerow(["t_s", "sent", "errors", "p50_ms", "p99_ms"])
        for row in result["intervals"]:
            out.writerow([row["t"], row["sent"], row["errors"], row["p50_ms"], row["p99_ms"]])
        out.writerow([])
        out.writerow(["t_s", *[f"{label} rss_kb" for label in labels]])
        times = sorted({round(t, 1) for points in series.values() for t, _ in points})
        lookup = {label: {round(t, 1): kb for t, kb in points} for label, points in series.items()}
        for t in times:
            out.writerow([t, *[lookup[label].get(t, "") for label in labels]])


def plot(result: dict[str, Any], path: Path, title: str) -> None:
    """Latency p50/p99 per interval over RSS per process, one PNG (kept small: ~100 dpi)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = rss_series(result["rss"], result["t0"])
    fig, (lat, mem) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    t = [row["t"] for row in result["intervals"]]
    lat.plot(t, [row["p50_ms"] for row in result["intervals"]], label="p50")
    lat.plot(t, [row["p99_ms"] for row in result["intervals"]], label="p99")
    lat.set_ylabel("latency (ms)")
    lat.set_ylim(bottom=0)
    lat.legend(loc="upper right")
    lat.set_title(title, fontsize=10)
    lat.grid(alpha=0.3)
    for label in sorted(series):
        if label == "container memory usage":
            continue
        points = series[label]
        mem.plot([p[0] for p in points], [p[1] / 1024 for p in points], label=label,
                 linestyle="--" if label == "service total" else "-")
    mem.set_ylabel("RSS (MiB)")
    mem.set_xlabel("seconds")
    mem.set_ylim(bottom=0)
    mem.grid(alpha=0.3)
    mem.legend(loc="center left", fontsize=7, bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
