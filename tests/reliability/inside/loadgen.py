#!/usr/bin/env python3
"""Bounded HTTP load against nginx on the test host's own loopback (runs INSIDE the container).

nginx exempts 127.0.0.1 from its per-client rate limit; traffic through the
published port arrives from the Docker gateway and is limited, so load is
made in here. Standard library only (the host has the distro python3).

    loadgen.py ramp --levels 1,2,4,8 --step 3            closed-loop sweep; prints the best rate
    loadgen.py constant --rate R --duration S --out FILE  open-loop fixed rate, RSS sampled

Every loop is bounded: by request count, by its duration and by a hard
deadline; `constant` also stops early when the file `<out>.stop` appears.
Latency is measured from each request's *scheduled* time, so a generator that
falls behind shows up as latency instead of hiding it (coordinated omission).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time

# Ordinary comments; after the first few requests every word is in each worker's cache.
TEXTS = (
    "Thanks for fixing the citation, the article reads much better now.",
    "I will kill you, you idiot!",
    "This edit is vandalism, please stop changing the infobox.",
    "You are a complete moron and everyone hates you.",
    "Could someone add a source for the population figure?",
    "What a stupid, pathetic argument. Go away.",
    "The second paragraph repeats the first one; I merged them.",
    "Shut up, nobody asked for your opinion, loser.",
)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Client:
    """One keep-alive connection; reconnects after any failure."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> tuple[int, str]:
        """(status, detail); status 0 = transport failure."""
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.conn.request("POST", "/detect-toxic", body=body, headers={"Content-Type": "application/json"})
            response = self.conn.getresponse()
            data = response.read()
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            if response.status != 200:
                return response.status, data[:200].decode(errors="replace")
            if b'"prediction"' not in data:
                return -1, "200 without a prediction: " + data[:200].decode(errors="replace")
            return 200, ""
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return 0, f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def body_for(n: int) -> bytes:
    return json.dumps({"sequence": TEXTS[n % len(TEXTS)]}).encode()


# ------------------------------------------------------------------ ramp


def closed_loop(host: str, port: int, concurrency: int, seconds: float) -> dict:
    stop_at = time.monotonic() + seconds
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        client = Client(host, port, timeout=10)
        n = i
        for _ in range(100_000):  # bound; the clock ends the step long before
            if time.monotonic() >= stop_at:
                break
            started = time.monotonic()
            status, detail = client.post(body_for(n))
            elapsed = time.monotonic() - started
            with lock:
                if status == 200:
                    latencies.append(elapsed)
                else:
                    errors.append(f"{status} {detail}")
            n += concurrency
        client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 15)
    elapsed = time.monotonic() - began
    return {
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "ok": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * (percentile(latencies, 50) or 0), 2),
        "p99_ms": round(1000 * (percentile(latencies, 99) or 0), 2),
    }


def cmd_ramp(args: argparse.Namespace) -> int:
    closed_loop(args.host, args.port, 2, 1.0)  # warm every worker's cache and connections
    steps = [closed_loop(args.host, args.port, int(level), args.step) for level in args.levels.split(",")]
    clean = [step for step in steps if step["errors"] == 0]
    best = max(clean, key=lambda step: step["rps"]) if clean else None
    print(json.dumps({"steps": steps, "max_rps": best["rps"] if best else 0.0, "best": best}))
    return 0 if best else 1


# -------------------------------------------------------------- constant


def main_pid() -> int:
    out = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", "toxic-service"],
                         capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    return int(out or 0)


def proc_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (ppid, comm, rss kB) for every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:
            continue
        rss = int(fields.get("VmRSS", "0 kB").split()[0]) if "VmRSS" in fields else 0
        table[int(entry)] = (int(fields["PPid"]), fields["Name"].strip(), rss)
    return table


def container_memory_path() -> str | None:
    """This container's memory cgroup (cgroup v1, host namespace mounted at /sys/fs/cgroup)."""
    try:
        with open("/proc/1/cgroup") as cgroup:
            for line in cgroup:
                _, controllers, path = line.strip().split(":", 2)
                if "memory" in controllers.split(","):
                    # PID 1 sits in <container>/init.scope; the container's own group is its parent.
                    candidate = f"/sys/fs/cgroup/memory{path.removesuffix('/init.scope')}"
                    return candidate if os.path.isdir(candidate) else None
    except OSError:
        return None
    return None


def read_int(path: str) -> int | None:
    try:
        with open(path) as stream:
            return int(stream.read().strip())
    except (OSError, ValueError):
        return None


def sample_rss(cgroup: str | None) -> dict:
    table = proc_table()
    master = main_pid()
    rss: dict[str, int] = {}
    for pid, (ppid, comm, kb) in table.items():
        if comm == "nginx":
            rss[f"nginx {'master' if ppid == 1 else 'worker'} {pid}"] = kb
        elif pid == master:
            rss[f"gunicorn master {pid}"] = kb
        elif master and ppid == master:
            rss[f"gunicorn worker {pid}"] = kb
    sample: dict = {"t": time.time(), "rss_kb": rss}
    if cgroup:
        sample["container_usage_kb"] = (read_int(f"{cgroup}/memory.usage_in_bytes") or 0) // 1024
    return sample


def cmd_constant(args: argparse.Namespace) -> int:
    rate, duration = args.rate, args.duration
    total = int(rate * duration)
    hard_deadline = time.monotonic() + duration + args.grace
    stop_file = args.out + ".stop"
    records: list[tuple[float, float, int, str]] = []  # (scheduled wall time, latency s, status, detail)
    lock = threading.Lock()
    stopped = threading.Event()
    t0_wall = time.time() + 0.5
    t0 = time.monotonic() + 0.5

    def worker(i: int) -> None:
        client = Client(args.host, args.port, timeout=args.timeout)
        for n in range(i, total, args.threads):
            due = t0 + n / rate
            if stopped.is_set() or time.monotonic() > hard_deadline:
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            status, detail = client.post(body_for(n))
            latency = time.monotonic() - due
            with lock:
                records.append((t0_wall + n / rate, latency, status, detail))
        client.close()

    samples: list[dict] = []
    cgroup = container_memory_path()

    def sampler() -> None:
        for _ in range(int((duration + args.grace) / args.sample_every) + 2):
            samples.append(sample_rss(cgroup))
            if stopped.wait(args.sample_every) or time.monotonic() > hard_deadline:
                return

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(args.threads)]
    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    for thread in threads:
        thread.start()
    for _ in range(int((duration + args.grace) * 10) + 10):
        if not any(thread.is_alive() for thread in threads):
            break
        if os.path.exists(stop_file):
            stopped.set()
        time.sleep(0.1)
    stopped.set()
    for thread in threads:
        thread.join(timeout=args.timeout + 1)
    watcher.join(timeout=5)
    samples.append(sample_rss(cgroup))

    records.sort()
    intervals = []
    start = t0_wall
    for k in range(int(duration / args.interval) + 1):
        lo, hi = start + k * args.interval, start + (k + 1) * args.interval
        bucket = [r for r in records if lo <= r[0] < hi]
        if not bucket:
            continue
        ok = [r[1] for r in bucket if r[2] == 200]
        intervals.append({
            "t": round(lo - start, 2),
            "sent": len(bucket),
            "errors": len(bucket) - len(ok),
            "p50_ms": round(1000 * (percentile(ok, 50) or 0), 2),
            "p99_ms": round(1000 * (percentile(ok, 99) or 0), 2),
        })
    ok_latencies = [r[1] for r in records if r[2] == 200]
    errors = [{"t": round(r[0], 3), "status": r[2], "detail": r[3]} for r in records if r[2] != 200]
    # Achieved rate from completion times: a generator that falls behind shows it here.
    elapsed = max((r[0] + r[1] for r in records), default=t0_wall) - t0_wall
    result = {
        "rate": rate,
        "duration": duration,
        "t0": t0_wall,
        "planned": total,
        "sent": len(records),
        "ok": len(ok_latencies),
        "errors": len(errors),
        "error_list": errors[:200],
        "achieved_rps": round(len(records) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(1000 * (percentile(ok_latencies, 50) or 0), 2),
        "p99_ms": round(1000 * (percentile(ok_latencies, 99) or 0), 2),
        "max_ms": round(1000 * max(ok_latencies, default=0), 2),
        "intervals": intervals,
        "rss": samples,
    }
    tmp = args.out + ".tmp"
    with open(tmp, "w") as stream:
        json.dump(result, stream)
    os.replace(tmp, args.out)
    print(json.dumps({k: v for k, v in result.items() if k not in ("intervals", "rss", "error_list")}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=80)
    sub = parser.add_subparsers(dest="command", required=True)
    ramp = sub.add_parser("ramp")
    ramp.add_argument("--levels", default="1,2,4,8")
    ramp.add_argument("--step", type=float, default=3.0)
    ramp.set_defaults(func=cmd_ramp)
    const = sub.add_parser("constant")
    const.add_argument("--rate", type=float, required=True)
    const.add_argument("--duration", type=float, required=True)
    const.add_argument("--out", required=True)
    # Measured on 2 CPUs shared with the service: 8 threads hold ~600 req/s; 16 fall
    # behind at the same rate (GIL contention), which would be blamed on the service.
    const.add_argument("--threads", type=int, default=8)
    const.add_argument("--timeout", type=float, default=35.0, help="per request (above nginx's 30 s read timeout)")
    const.add_argument("--grace", type=float, default=40.0, help="seconds past --duration before giving up")
    const.add_argument("--interval", type=float, default=5.0, help="seconds per latency bucket")
    const.add_argument("--sample-every", type=float, default=2.0, help="seconds between RSS samples")
    const.set_defaults(func=cmd_constant)
    args = parser.parse_args(argv)
    if getattr(args, "rate", 1) <= 0 or getattr(args, "duration", 1) <= 0:
        parser.error("--rate and --duration must be positive")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
