#!/usr/bin/env python3
"""A bounded, constant-rate request load that counts what failed (standard library only).

    python3 loadgen.py [--url http://127.0.0.1/] [--rate 40] [--max-seconds 120]
                       [--max-requests N] [--stop-file PATH] [--timeout 30]

Open loop: request i is sent at start + i/rate whatever happened to the ones
before it, so a stall on the server shows up as slow or failed requests instead
of quietly lowering the rate. Every request is a real scoring request
(POST /detect-toxic); "ok" means HTTP 200 with six scores in [0, 1]. It stops
at --max-seconds, after --max-requests, or as soon as --stop-file exists,
waits (bounded by --timeout) for the requests in flight, and prints one JSON
object: counts of ok and failed, failures by HTTP status or error, latencies.

The deploy tests copy it into the test container and run it there with
`docker exec`, against nginx on 127.0.0.1 (exempt from nginx's per-client rate
limit, which traffic through the published port is not: it arrives from the
Docker gateway's address).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import sys
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

COMMENTS = (
    "thank you for the helpful edit, the references look good now",
    "you are a stupid idiot and everyone knows it",
    "I disagree with this change; please discuss it on the talk page first",
    "get lost, nobody wants your garbage here",
    "the article could use a better source for the second paragraph",
)


def one_request(url: urllib.parse.SplitResult, host_header: str, body: bytes, timeout: float) -> str:
    """'ok', or why not: 'http <status>' or the exception's name."""
    port = url.port or (443 if url.scheme == "https" else 80)
    cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = cls(url.hostname or "127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json", "Host": host_header or url.netloc, "Connection": "close"}
        conn.request("POST", url.path.rstrip("/") + "/detect-toxic", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        if response.status != 200:
            return f"http {response.status}"
        scores = json.loads(payload).get("prediction")
        if not isinstance(scores, dict) or len(scores) != 6 or not all(
            isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in scores.values()
        ):
            return "bad body"
        return "ok"
    except Exception as exc:  # noqa: BLE001 - every failure is counted by its kind
        return type(exc).__name__
    finally:
        conn.close()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def run(url: str, rate: float, max_seconds: float, max_requests: int | None, stop_file: str | None, timeout: float,
        host_header: str = "", concurrency: int = 256) -> dict:
    target = urllib.parse.urlsplit(url)
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    failures: list[tuple[float, str]] = []
    lock = threading.Lock()
    bodies = [json.dumps({"sequence": text}).encode() for text in COMMENTS]
    start = time.monotonic()

    def task(i: int) -> None:
        sent = time.monotonic()
        outcome = one_request(target, host_header, bodies[i % len(bodies)], timeout)
        done = time.monotonic()
        with lock:
            outcomes[outcome] += 1
            latencies.append(done - sent)
            if outcome != "ok":
                failures.append((round(sent - start, 2), outcome))

    sent = 0
    stopped_by = "max-seconds"
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        while True:
            now = time.monotonic()
            if now - start >= max_seconds:
                break
            if max_requests is not None and sent >= max_requests:
                stopped_by = "max-requests"
                break
            if stop_file and os.path.exists(stop_file):
                stopped_by = "stop-file"
                break
            due = start + sent / rate
            if due > now:
                time.sleep(min(due - now, 0.05))
                continue
            pool.submit(task, sent)
            sent += 1
        sending = time.monotonic() - start
        # Waiting for the requests in flight is bounded by their own timeout (the pool's exit joins them).
    failed = sum(n for outcome, n in outcomes.items() if outcome != "ok")
    return {
        "sent": sent,
        "ok": outcomes.get("ok", 0),
        "failed": failed,
        "failures": {k: v for k, v in sorted(outcomes.items()) if k != "ok"},
        "first_failures": sorted(failures)[:10],
        "rate": rate,
        "seconds": round(sending, 2),
        "stopped_by": stopped_by,
        "latency_ms": {
            name: None if value is None else round(value * 1000, 1)
            for name, value in (("p50", percentile(latencies, 50)), ("p99", percentile(latencies, 99)),
                                ("max", max(latencies) if latencies else None))
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1/", help="base URL (default: nginx on loopback)")
    parser.add_argument("--host-header", default="localhost", help="Host header (nginx's server name)")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second (default 40)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop sending after this long (default 120)")
    parser.add_argument("--max-requests", type=int, default=None, help="stop after this many requests")
    parser.add_argument("--stop-file", default=None, help="stop as soon as this file exists")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds (default 30)")
    args = parser.parse_args(argv)
    if not 0 < args.rate <= 1000 or not 0 < args.max_seconds <= 3600 or not 0 < args.timeout <= 300:
        parser.error("--rate must be in (0, 1000], --max-seconds in (0, 3600], --timeout in (0, 300]")
    if args.stop_file and os.path.exists(args.stop_file):
        os.unlink(args.stop_file)  # a stale stop file from an earlier run would stop this one at once
    result = run(args.url, args.rate, args.max_seconds, args.max_requests, args.stop_file, args.timeout, args.host_header)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
