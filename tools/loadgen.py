#!/usr/bin/env python3
"""Bounded load of real scoring requests against nginx, and the project's one percentile function.

    loadgen.py constant --rate R --duration S [--stop-file F] [--out FILE] [--sample-rss]
    loadgen.py closed --threads N --duration S [--max-requests N] [--comments-file F|-]
    loadgen.py ramp [--levels 1,2,4,8] [--step 3]

`constant` is an open loop: request n is due at t0 + n/rate whatever happened
to the ones before it, and its latency is measured from that due time, so a
stall on the server (or a generator that falls behind) shows up as latency
instead of quietly lowering the rate (coordinated omission). It prints the
line {"event": "ready", ...} as soon as its first request has succeeded (a
caller starts the operation under test only then), and at the end one JSON
object: counts, failures by kind, latency percentiles, per-interval figures
and, with --sample-rss, the service's memory sampled every few seconds.
`closed` keeps N connections busy (each sends its next request when the last
one answered): the figure is what the stack sustains. `ramp` runs `closed`
for each concurrency level and reports the best clean rate.

A request is "ok" only when it answers 200 with one score in [0, 1] for each
label of the bundle the service serves: the label set is read from the
service's own /readyz at the start (and again when a response shows another
set, e.g. after a model deploy), never assumed.

Every loop is bounded by request count, by its duration and by a hard
deadline; `constant` also stops as soon as --stop-file exists.

The deploy tests, the reliability suite and bench/provision copy this file into
the test container and run it with the host's python3 against nginx on
127.0.0.1 (exempt from nginx's per-client rate limit; traffic through the
published port arrives from the Docker gateway and is limited). It runs on the
target's own Python, so it is standard library only and Python 3.6-clean
(EL7): no `from __future__ import annotations`, no `capture_output`.
"""

import argparse
import http.client
import json
import math
import os
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

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
ERROR_LIST_LIMIT = 200  # failures listed one by one in a result (all are counted)


def percentile(values, q):
    """The q-th percentile (0..100) of values, interpolated linearly between ranks (numpy's default); None if empty.

    The one percentile of the project: benchmarks (bench/), the deploy tests and the reliability suite all use it.
    """
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _ms(seconds):
    return None if seconds is None else round(1000 * seconds, 2)


# ------------------------------------------------------------------ the service


class Target:
    """Where requests go: base URL, Host header, per-request timeout, a new connection per request or not."""

    def __init__(self, url, host_header, timeout, keep_alive):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--url {url!r}: expected http(s)://host[:port]/")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.host_header = host_header or parts.netloc
        self.timeout = timeout
        self.keep_alive = keep_alive


class Client:
    """One connection (kept alive when the target says so); reconnects after any failure."""

    def __init__(self, target):
        self.target = target
        self.conn = None

    def request(self, method, path, body=None):
        """(status, body bytes); raises OSError / HTTPException on a transport failure (the connection is dropped)."""
        target = self.target
        headers = {"Host": target.host_header, "Connection": "keep-alive" if target.keep_alive else "close"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            if self.conn is None:
                cls = http.client.HTTPSConnection if target.https else http.client.HTTPConnection
                self.conn = cls(target.host, target.port, timeout=target.timeout)
            self.conn.request(method, target.prefix + path, body=body, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if not target.keep_alive or (response.getheader("Connection") or "").lower() == "close":
            self.close()
        return response.status, data

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Labels:
    """The label sets the service announced on /readyz during this run; a scored body must carry one of them.

    Read at the start; when a body carries another set, /readyz is asked again (at most once a second), so a
    deploy that switches to a bundle with other labels is followed instead of counted as failures.
    """

    def __init__(self, target, wait_seconds):
        self.target = target
        self.lock = threading.Lock()
        self.last_refresh = 0.0
        deadline = time.monotonic() + wait_seconds
        last = "no answer"
        while True:
            labels, last = self._read()
            if labels:
                self.sets = [labels]
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(f"GET /readyz on {target.host}:{target.port} gave no label set "
                                   f"within {wait_seconds:.0f} s (last: {last})")
            time.sleep(0.5)

    def _read(self):
        """(frozenset of labels or None, what /readyz said)."""
        try:
            status, data = Client(self.target).request("GET", "/readyz")
        except (OSError, http.client.HTTPException) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        if status != 200:
            return None, "HTTP {} {}".format(status, data[:200].decode("utf-8", "replace"))
        try:
            labels = json.loads(data.decode("utf-8")).get("labels")
        except (ValueError, AttributeError):
            labels = None
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            return None, "200 without a label list: " + data[:200].decode("utf-8", "replace")
        return frozenset(labels), "ok"

    def first(self):
        return sorted(self.sets[0])

    def accepts(self, labels):
        if labels in self.sets:
            return True
        with self.lock:
            if labels in self.sets:
                return True
            if time.monotonic() - self.last_refresh >= 1.0:
                self.last_refresh = time.monotonic()
                current, _ = self._read()
                if current and current not in self.sets:
                    self.sets.append(current)
            return labels in self.sets


def score(client, labels, body):
    """(status, detail) of one POST /detect-toxic: 200 = ok, 0 = transport failure, -1 = 200 with a wrong body."""
    try:
        status, data = client.request("POST", "/detect-toxic", body)
    except (OSError, http.client.HTTPException) as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    if status != 200:
        return status, data[:200].decode("utf-8", "replace")
    try:
        prediction = json.loads(data.decode("utf-8")).get("prediction")
    except (ValueError, AttributeError):
        prediction = None
    if (not isinstance(prediction, dict)
            or not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in prediction.values())
            or not labels.accepts(frozenset(prediction))):
        return -1, "200 without a score in [0, 1] per label {}: {}".format(
            labels.first(), data[:200].decode("utf-8", "replace"))
    return 200, ""


def kind(status, detail):
    """A failure's kind for the counts: 'http 502', 'bad body', or the exception's name."""
    if status == 0:
        return detail.split(":", 1)[0]
    return "bad body" if status == -1 else f"http {status}"


def bodies_of(texts):
    return [json.dumps({"sequence": text}).encode("utf-8") for text in texts]


# ------------------------------------------------------------------ memory, read inside the host


def main_pid():
    try:
        out = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", "toxic-service"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return int(out.decode().strip() or 0)


def proc_table():
    """pid -> (ppid, name, rss kB) for every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:
            continue
        rss = int(fields["VmRSS"].split()[0]) if "VmRSS" in fields else 0
        table[int(entry)] = (int(fields["PPid"]), fields["Name"].strip(), rss)
    return table


def container_memory_path():
    """This container's memory cgroup directory (v1 or v2; the host's cgroup tree is mounted at /sys/fs/cgroup)."""
    try:
        with open("/proc/1/cgroup") as cgroup:
            lines = [line.strip().split(":", 2) for line in cgroup if line.count(":") >= 2]
    except OSError:
        return None
    for hierarchy, controllers, path in lines:
        v1 = "memory" in controllers.split(",")
        if v1 or (hierarchy == "0" and controllers == ""):
            # PID 1 (systemd) sits in <container>/init.scope; the container's own group is its parent.
            if path.endswith("/init.scope"):
                path = path[: -len("/init.scope")]
            candidate = "/sys/fs/cgroup/memory" + path if v1 else "/sys/fs/cgroup" + path
            if os.path.isdir(candidate):
                return candidate
    return None


def _read_keyed(path):
    try:
        with open(path) as stream:
            return {k: int(v) for k, v in (line.split() for line in stream if len(line.split()) == 2)}
    except (OSError, ValueError):
        return {}


def _read_int(path):
    try:
        with open(path) as stream:
            return int(stream.read().strip())
    except (OSError, ValueError):
        return None


def cgroup_memory(cgroup):
    """The container's usage (incl. page cache) and anonymous memory in kB, and its OOM kill count (v1 or v2)."""
    if not cgroup:
        return {}
    out = {}
    usage = _read_int(cgroup + "/memory.usage_in_bytes")  # v1
    if usage is None:
        usage = _read_int(cgroup + "/memory.current")  # v2
    if usage is not None:
        out["container_usage_kb"] = usage // 1024
    stat = _read_keyed(cgroup + "/memory.stat")
    anon = stat.get("total_rss", stat.get("anon"))  # v1 counts the sub-groups in total_*; v2's anon does
    if anon is not None:
        out["container_anon_kb"] = anon // 1024
    events = _read_keyed(cgroup + "/memory.oom_control")  # v1 (kernel >= 4.13)
    if "oom_kill" not in events:
        events = _read_keyed(cgroup + "/memory.events")  # v2
    if "oom_kill" in events:
        out["container_oom_kills"] = events["oom_kill"]
    return out


def sample_memory(cgroup):
    """One sample: the RSS of nginx and of the gunicorn master and workers, and the container's cgroup figures."""
    table = proc_table()
    master = main_pid()
    rss = {}
    for pid, (ppid, name, kb) in table.items():
        if name == "nginx":
            rss["nginx {} {}".format("master" if ppid == 1 else "worker", pid)] = kb
        elif pid == master:
            rss[f"gunicorn master {pid}"] = kb
        elif master and ppid == master:
            rss[f"gunicorn worker {pid}"] = kb
    sample = {"t": time.time(), "rss_kb": rss}
    sample.update(cgroup_memory(cgroup))
    return sample


# ------------------------------------------------------------------ constant (open loop)


def constant(target, labels, bodies, rate, duration, threads=8, grace=40.0, stop_file=None, interval=5.0,
             sample_every=None, on_ready=None):
    """Open-loop load at `rate` for `duration` s (or until stop_file exists); the result as a dict."""
    total = int(rate * duration)
    records = []  # (due wall time, latency s from the due time, status, detail)
    lock = threading.Lock()
    stopped = threading.Event()
    ready = threading.Event()
    t0_wall = time.time() + 0.5
    t0 = time.monotonic() + 0.5
    hard_deadline = t0 + duration + grace

    def worker(i):
        client = Client(target)
        for n in range(i, total, threads):
            due = t0 + n / rate
            if stopped.is_set() or time.monotonic() > hard_deadline:
                break
            delay = due - time.monotonic()
            if delay > 0 and stopped.wait(delay):
                break
            status, detail = score(client, labels, bodies[n % len(bodies)])
            latency = time.monotonic() - due
            with lock:
                records.append((t0_wall + n / rate, latency, status, detail))
                first_ok = status == 200 and not ready.is_set()
                if first_ok:
                    ready.set()
            if first_ok and on_ready is not None:
                on_ready(time.monotonic() - t0)
        client.close()

    samples = []
    cgroup = container_memory_path() if sample_every else None

    def sampler():
        for _ in range(int((duration + grace) / sample_every) + 2):
            samples.append(sample_memory(cgroup))
            if stopped.wait(sample_every) or time.monotonic() > hard_deadline:
                return

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    watcher = threading.Thread(target=sampler, daemon=True) if sample_every else None
    if watcher:
        watcher.start()
    for thread in workers:
        thread.start()
    stopped_by = "duration"
    for _ in range(int((duration + grace) * 10) + 10):
        if not any(thread.is_alive() for thread in workers):
            break
        if stop_file and os.path.exists(stop_file):
            stopped_by = "stop-file"
            stopped.set()
        time.sleep(0.1)
    else:
        stopped_by = "deadline"
    sending = time.monotonic() - t0
    stopped.set()
    for thread in workers:
        thread.join(timeout=target.timeout + 1)
    if watcher:
        watcher.join(timeout=5)
        samples.append(sample_memory(cgroup))

    records.sort()
    ok_latencies = [r[1] for r in records if r[2] == 200]
    failures = [r for r in records if r[2] != 200]
    counts = {}
    for r in failures:
        counts[kind(r[2], r[3])] = counts.get(kind(r[2], r[3]), 0) + 1
    intervals = []
    for k in range(int(duration / interval) + 1):
        lo, hi = t0_wall + k * interval, t0_wall + (k + 1) * interval
        bucket = [r for r in records if lo <= r[0] < hi]
        if bucket:
            ok = [r[1] for r in bucket if r[2] == 200]
            intervals.append({"t": round(lo - t0_wall, 2), "sent": len(bucket), "errors": len(bucket) - len(ok),
                              "p50_ms": _ms(percentile(ok, 50)) or 0, "p99_ms": _ms(percentile(ok, 99)) or 0})
    # Achieved rate from completion times: a generator that falls behind shows it here.
    elapsed = max((r[0] + r[1] for r in records), default=t0_wall) - t0_wall
    result = {
        "mode": "constant",
        "rate": rate,
        "duration": duration,
        "threads": threads,
        "keep_alive": target.keep_alive,
        "labels": labels.first(),
        "t0": t0_wall,
        "planned": total,
        "sent": len(records),
        "ok": len(ok_latencies),
        "errors": len(failures),
        "failures": dict(sorted(counts.items())),
        "error_list": [{"t": round(r[0], 3), "status": r[2], "detail": r[3]} for r in failures[:ERROR_LIST_LIMIT]],
        "seconds": round(max(sending, 0.0), 2),
        "stopped_by": stopped_by,
        "achieved_rps": round(len(records) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": _ms(percentile(ok_latencies, 50)) or 0,
        "p99_ms": _ms(percentile(ok_latencies, 99)) or 0,
        "max_ms": _ms(max(ok_latencies, default=0)),
        "intervals": intervals,
    }
    if sample_every:
        result["rss"] = samples
    return result


# ------------------------------------------------------------------ closed loop and ramp


def closed(target, labels, bodies, concurrency, seconds, max_requests=None):
    """`concurrency` connections, each sending its next request when the last one answered, for `seconds`."""
    stop_at = time.monotonic() + seconds
    bound = max_requests if max_requests is not None else 1000000  # the clock ends a step long before
    latencies, errors, counts = [], [], {}
    issued = [0]
    lock = threading.Lock()

    def worker(i):
        client = Client(target)
        n = i
        for _ in range(bound):
            with lock:
                if issued[0] >= bound or time.monotonic() >= stop_at:
                    break
                issued[0] += 1
            started = time.monotonic()
            status, detail = score(client, labels, bodies[n % len(bodies)])
            elapsed = time.monotonic() - started
            with lock:
                if status == 200:
                    latencies.append(elapsed)
                else:
                    errors.append(f"{status} {detail}")
                    counts[kind(status, detail)] = counts.get(kind(status, detail), 0) + 1
            n += concurrency
        client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, stop_at - time.monotonic()) + target.timeout + 5)
    elapsed = time.monotonic() - began
    return {
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "ok": len(latencies),
        "errors": len(errors),
        "failures": dict(sorted(counts.items())),
        "error_samples": errors[:5],
        "rps": round(len(latencies) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": _ms(percentile(latencies, 50)) or 0,
        "p99_ms": _ms(percentile(latencies, 99)) or 0,
        "stuck_threads": sum(thread.is_alive() for thread in threads),
    }


def ramp(target, labels, bodies, levels, step):
    closed(target, labels, bodies, 2, 1.0)  # warm every worker's cache and connections
    steps = [closed(target, labels, bodies, level, step) for level in levels]
    clean = [s for s in steps if s["errors"] == 0]
    best = max(clean, key=lambda s: s["rps"]) if clean else None
    return {"steps": steps, "max_rps": best["rps"] if best else 0.0, "best": best}


# ------------------------------------------------------------------ command line


def read_texts(path):
    """Comments from a JSON file (a list of strings, or {"texts": [...]}); '-' reads stdin."""
    if path == "-":
        data = json.load(sys.stdin)
    else:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    texts = data.get("texts") if isinstance(data, dict) else data
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError(f"--comments-file {path}: expected a non-empty JSON list of comments (or {{\"texts\": [...]}})")
    return texts


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1/", help="base URL (default: nginx on loopback)")
    p.add_argument("--host-header", default="localhost", help="Host header (default: localhost)")
    p.add_argument("--timeout", type=float, default=35.0, help="per request, s (default 35: above nginx's 30 s read timeout)")
    p.add_argument("--connection", choices=("keep-alive", "close"), default="keep-alive",
                   help="keep one connection per thread, or open a new one per request (default keep-alive)")
    p.add_argument("--comments-file", default=None, help="JSON list of comments to send ('-' = stdin); default: built in")
    p.add_argument("--ready-wait", type=float, default=30.0, help="how long /readyz may take to give the labels, s")
    sub = p.add_subparsers(dest="command")  # `required=` needs Python 3.7: checked in main()

    const = sub.add_parser("constant", help="open loop at a fixed rate")
    const.add_argument("--rate", type=float, required=True)
    const.add_argument("--duration", type=float, required=True, help="seconds of load (at most)")
    const.add_argument("--stop-file", default=None, help="stop as soon as this file exists (a stale one is removed)")
    const.add_argument("--out", default=None, help="write the full result here (stdout then gets the summary only)")
    # Measured on 2 CPUs shared with the service: 8 threads hold ~600 req/s; 16 fall
    # behind at the same rate (GIL contention), which would be blamed on the service.
    const.add_argument("--threads", type=int, default=8)
    const.add_argument("--grace", type=float, default=40.0, help="seconds past --duration before giving up")
    const.add_argument("--interval", type=float, default=5.0, help="seconds per latency bucket")
    const.add_argument("--sample-rss", type=float, default=None, metavar="SECONDS",
                       help="sample the service's RSS and the container's memory cgroup this often")

    closed_p = sub.add_parser("closed", help="N connections in a closed loop")
    closed_p.add_argument("--threads", type=int, required=True)
    closed_p.add_argument("--duration", type=float, required=True)
    closed_p.add_argument("--max-requests", type=int, default=None)

    ramp_p = sub.add_parser("ramp", help="closed loop per concurrency level; the best clean rate")
    ramp_p.add_argument("--levels", default="1,2,4,8")
    ramp_p.add_argument("--step", type=float, default=3.0)
    return p


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    if args.command is None:
        p.error("a command is required: constant, closed or ramp")
    if not 0 < args.timeout <= 300:
        p.error("--timeout must be in (0, 300]")
    if args.command == "constant" and not (0 < args.rate <= 5000 and 0 < args.duration <= 7200 and 0 < args.threads <= 512):
        p.error("--rate must be in (0, 5000], --duration in (0, 7200], --threads in (0, 512]")
    if args.command == "closed" and not (0 < args.threads <= 512 and 0 < args.duration <= 7200):
        p.error("--threads must be in (0, 512], --duration in (0, 7200]")
    try:
        levels = [int(x) for x in args.levels.split(",")] if args.command == "ramp" else []
    except ValueError:
        p.error("--levels: comma-separated connection counts, e.g. 1,2,4,8")
    if any(not 0 < level <= 512 for level in levels):
        p.error("--levels: each in (0, 512]")
    try:
        texts = read_texts(args.comments_file) if args.comments_file else TEXTS
        target = Target(args.url, args.host_header, args.timeout, args.connection == "keep-alive")
    except (OSError, ValueError) as exc:
        p.error(str(exc))
    bodies = bodies_of(texts)
    if args.command == "constant" and args.stop_file and os.path.exists(args.stop_file):
        os.unlink(args.stop_file)  # a stale stop file from an earlier run would stop this one at once
    try:
        labels = Labels(target, args.ready_wait)
    except RuntimeError as exc:
        print("loadgen: " + str(exc), file=sys.stderr)
        return 2

    if args.command == "ramp":
        result = ramp(target, labels, bodies, levels, args.step)
        emit(result)
        return 0 if result["best"] else 1
    if args.command == "closed":
        emit(closed(target, labels, bodies, args.threads, args.duration, args.max_requests))
        return 0

    def on_ready(after):
        emit({"event": "ready", "after_s": round(after, 3), "labels": labels.first()})

    result = constant(target, labels, bodies, args.rate, args.duration, args.threads, args.grace, args.stop_file,
                      args.interval, args.sample_rss, on_ready)
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as stream:
            json.dump(result, stream)
        os.replace(tmp, args.out)
        emit({k: v for k, v in result.items() if k not in ("intervals", "rss", "error_list")})
    else:
        emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
