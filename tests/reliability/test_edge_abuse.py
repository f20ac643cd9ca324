"""One abusive client against the edge, through the published port, while a well-behaved client is measured.

Everything from this machine through the published port arrives from one address (the Docker
gateway): that is the abuser. The well-behaved client runs inside the host (tools/loadgen.py) against
the host's own network address, so nginx sees another, non-exempt client with its own limits.
Figures: the well-behaved p50/p99 during each abuse, the abuser's 429s, nginx's RSS with 1,000 slow
bodies. The same limits on a bare nginx, one by one: tests/unit/test_nginx_edge_limits.py.
Reproduce: TOXIC_RELIABILITY_PROFILE=short .venv/bin/pytest tests/reliability/test_edge_abuse.py
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import socket
import subprocess
import threading
import time

import pytest
from relhost import LOADGEN_IN_HOST, HostError

# The well-behaved client's p99 while one client abuses: quiet it is ~20 ms; one heavy-batch client
# at 20 r/s without the heavy limit made it 1.8 s (measured before the fix).
WELL_BEHAVED_P99_MS = 300.0
HEAVY_TEXTS, HEAVY_CHARS = 64, 15000


def _own_address(host) -> str:
    return host.sh("hostname -I").split()[0]


def _well_behaved(host, seconds: float, rate: float = 5.0) -> subprocess.Popen:
    url = f"http://{_own_address(host)}/"
    return subprocess.Popen(["docker", "exec", host.name, "python3", LOADGEN_IN_HOST, "--url", url, "constant",
                             "--rate", str(rate), "--duration", str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen, seconds: float) -> dict:
    out, err = proc.communicate(timeout=seconds + 90)
    assert proc.returncode == 0, err[-800:]
    return json.loads(out.strip().splitlines()[-1])


def _heavy_body() -> bytes:
    words = ["the", "article", "reads", "much", "better", "now", "you", "idiot", "stop", "changing", "the", "infobox"]
    text = " ".join(words[i % len(words)] for i in range(HEAVY_CHARS // 5))[:HEAVY_CHARS]
    return json.dumps({"sequences": [text] * HEAVY_TEXTS}).encode()


def _abuse(port: int, body: bytes, rate: float, seconds: float) -> collections.Counter:
    """Open loop: request n is sent at t0 + n/rate (bounded by count and time); statuses counted."""
    counts: collections.Counter = collections.Counter()
    lock = threading.Lock()
    total, started = int(rate * seconds), time.monotonic()
    due = iter(range(total))

    def worker() -> None:
        while True:
            with lock:
                n = next(due, None)
            if n is None or time.monotonic() - started > seconds + 30:
                return
            time.sleep(max(0.0, started + n / rate - time.monotonic()))
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("POST", "/detect-toxic", body=body, headers={"Content-Type": "application/json"})
                answer = conn.getresponse()
                answer.read()
                conn.close()
                kind: object = answer.status
            except OSError as exc:
                kind = type(exc).__name__
            with lock:
                counts[kind] += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    return counts


def test_one_heavy_batch_client_leaves_the_workers_to_others(host, figures):
    seconds = 15.0
    well = _well_behaved(host, seconds)
    time.sleep(1.5)
    abuser = _abuse(host.http_port, _heavy_body(), rate=20, seconds=seconds - 3)
    result = _result(well, seconds)
    limited = abuser.get(429, 0)
    figures.add(f"edge: well-behaved p50/p99 while one client sends {HEAVY_TEXTS}x{HEAVY_CHARS}-char batches at 20 r/s",
                f"{result['p50_ms']:.0f} / {result['p99_ms']:.0f} ms", f"p99 <= {WELL_BEHAVED_P99_MS:.0f} ms",
                result["p99_ms"] <= WELL_BEHAVED_P99_MS and result["errors"] == 0,
                f"abuser: {dict(abuser)} (429: {limited}); well-behaved {result['ok']}/{result['sent']} ok")
    print(f"\nheavy abuser {dict(abuser)}; well-behaved p50 {result['p50_ms']} ms p99 {result['p99_ms']} ms")
    assert result["errors"] == 0, result["failures"]
    assert limited > 0 and abuser.get(200, 0) <= 2 * (seconds - 3) + 8, abuser
    assert result["p99_ms"] <= WELL_BEHAVED_P99_MS, result


SLOW_IN_HOST = r"""
import socket, sys, time
count, sent, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
head = ("POST /detect-toxic HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 1047552\r\nConnection: close\r\n\r\n").encode()
conns, chunk, started = [], b"x" * sent, time.monotonic()
for _ in range(count):
    c = socket.create_connection(("127.0.0.1", 80), timeout=10)
    c.sendall(head + chunk)
    conns.append(c)
print("held", len(conns), round(time.monotonic() - started, 1), flush=True)
time.sleep(hold)
for c in conns:
    c.close()
"""


def _nginx_rss_kib(host) -> int:
    out = host.sh("ps -C nginx -o rss=")
    return sum(int(x) for x in out.split())


def test_slow_clients_hold_little_and_take_no_service_from_others(host, figures):
    """1,000 bodies stalled after 128 KiB from loopback (exempt: the worst case of many addresses), and one
    outside client trying 300 at once through the published port, while the well-behaved client is measured."""
    count, sent, hold = 1000, 128 * 1024, 25.0
    host.exec("sh", "-c", f"cat > /root/reliability/slow.py <<'EOF'\n{SLOW_IN_HOST}\nEOF")
    before = _nginx_rss_kib(host)
    slow = subprocess.Popen(["docker", "exec", host.name, "python3", "/root/reliability/slow.py", str(count), str(sent),
                             str(hold)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = slow.stdout.readline()  # type: ignore[union-attr]
    assert first.startswith("held"), (first, slow.stderr.read() if slow.poll() is not None else "")  # type: ignore[union-attr]
    rss = 0
    for _ in range(4):  # nginx reads the 1,000 bodies from its sockets' queues in its own time
        time.sleep(1.0)
        rss = max(rss, _nginx_rss_kib(host))
    outside, statuses = [], collections.Counter()
    head = (b"POST /detect-toxic HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\nConnection: close\r\n\r\n{")
    try:
        for _ in range(300):
            conn = socket.create_connection(("127.0.0.1", host.http_port), timeout=10)
            conn.sendall(head)
            outside.append(conn)
        well = _well_behaved(host, 10.0)
        for conn in outside:
            conn.settimeout(0.5)
            try:
                line = conn.recv(64)
                statuses[int(line.split()[1]) if line else "closed"] += 1
            except TimeoutError:
                statuses["held"] += 1
            except OSError as exc:
                statuses[type(exc).__name__] += 1
        result = _result(well, 10.0)
    finally:
        for conn in outside:
            conn.close()
        slow.communicate(timeout=hold + 60)
    # Absolute, not growth: nginx's heap keeps what earlier tests made it grow to (glibc does not give it back).
    # In memory (1 MiB buffer) the 1,000 x 128 KiB alone would be 125 MiB.
    figures.add(f"edge: nginx RSS (master + worker) with {count} bodies stalled after {sent // 1024} KiB",
                f"{before / 1024:.0f} MiB before, {rss / 1024:.0f} MiB held", "< 100 MiB",
                rss < 100 * 1024, "client_body_buffer_size 16k; the rest in temp files")
    figures.add("edge: well-behaved p50/p99 while 1,000 slow bodies are held and one client opens 300",
                f"{result['p50_ms']:.0f} / {result['p99_ms']:.0f} ms", f"p99 <= {WELL_BEHAVED_P99_MS:.0f} ms",
                result["p99_ms"] <= WELL_BEHAVED_P99_MS and result["errors"] == 0,
                f"the outside client's 300: {dict(statuses)} (limit_conn 10)")
    print(f"\nslow: nginx RSS {before} -> {rss} KiB; outside 300: {dict(statuses)}; well-behaved p50 "
          f"{result['p50_ms']} p99 {result['p99_ms']} ms")
    assert rss < 100 * 1024, f"nginx holds {rss / 1024:.0f} MiB with {count} slow bodies"
    assert statuses.get("held", 0) <= 10 and statuses.get(429, 0) >= 280, statuses
    assert result["errors"] == 0 and result["p99_ms"] <= WELL_BEHAVED_P99_MS, result


IPV6_IN_HOST = r"""
import socket, sys, json
def ask(source):
    c = socket.socket(socket.AF_INET6)
    c.settimeout(10)
    c.bind((source, 0))
    c.connect(("2001:db8:5:1::a", 80))
    c.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    c.close()
    return int(data.split()[1])
first = [ask("2001:db8:5:1::a") for _ in range(80)]
print(json.dumps({"a": first, "b": [ask("2001:db8:5:1::b") for _ in range(5)],
                  "other64": [ask("2001:db8:5:2::a") for _ in range(5)]}))
"""


def _in_netns(host, *cmd: str) -> None:
    """`cmd` from this machine in the container's network namespace (its /proc/sys/net is writable there)."""
    pid = host.inspect()["State"]["Pid"]
    subprocess.run(["nsenter", "-t", str(pid), "-n", *cmd], check=True, capture_output=True, timeout=30)


def test_ipv6_clients_are_limited_per_64(host, figures):
    """Two addresses of one /64 share a budget; another /64 has its own. Addresses on the host's lo (::1 is exempt)."""
    addresses = ["2001:db8:5:1::a", "2001:db8:5:1::b", "2001:db8:5:2::a"]
    sysctl = "net.ipv6.conf.lo.disable_ipv6"
    disabled = host.exec("cat", "/proc/sys/net/ipv6/conf/lo/disable_ipv6").stdout.strip() == "1"
    if disabled:  # Docker without IPv6 turns it off in the container, whose /proc/sys is read-only inside
        if os.geteuid() != 0:
            pytest.skip(f"IPv6 /64 test NOT RUN: IPv6 is off in {host.name} and only root can turn it on (nsenter)")
        _in_netns(host, "sysctl", "-q", "-w", f"{sysctl}=0")
    try:
        for address in addresses:
            host.exec("ip", "-6", "addr", "add", f"{address}/128", "dev", "lo", "nodad")
        proc = host.exec("python3", "-c", IPV6_IN_HOST, timeout=120)
    except HostError as exc:
        raise AssertionError(f"IPv6 in {host.name}: {exc}") from None
    finally:
        for address in addresses:
            host.exec("ip", "-6", "addr", "del", f"{address}/128", "dev", "lo", check=False)
        if disabled:
            _in_netns(host, "sysctl", "-q", "-w", f"{sysctl}=1")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    first = collections.Counter(got["a"])
    figures.add("edge: IPv6 per /64", f"80 from ::a: {dict(first)}; then ::b (same /64): {got['b']}; "
                f"another /64: {got['other64']}", "::b limited, other /64 served",
                got["b"].count(429) >= 3 and set(got["other64"]) == {200}, "addresses added to the host's lo")
    print(f"\nIPv6: {got}")
    assert first[429] > 0, got
    # With a key of its own ::b would have a whole burst (40): five 200s. Sharing ::a's spent budget, it gets
    # what refills at 20 r/s while it asks: one or two at most.
    assert got["b"].count(429) >= 3, "a second address of the same /64 must share the first one's budget"
    assert set(got["other64"]) == {200}, "another /64 has its own budget"


def test_edge_errors_are_json_with_headers_and_no_redirect_uses_host(host, figures):
    def raw(payload: bytes) -> tuple[int, dict[str, str], bytes]:
        with socket.create_connection(("127.0.0.1", host.http_port), timeout=10) as conn:
            conn.sendall(payload)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        return int(lines[0].split()[1]), {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}, body

    time.sleep(2)  # the gateway address's budget from the tests above refills
    cases = {
        "bad_request": b"GARBAGE\x01 / HTTP/1.1\r\n\r\n",
        "payload_too_large": b"POST /detect-toxic HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\nConnection: close\r\n\r\n",
        "uri_too_long": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "headers_too_large": b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\nConnection: close\r\n\r\n",
        "not_found": b"GET /static//x HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    }
    seen = {}
    for code, payload in cases.items():
        status, headers, body = raw(payload)
        seen[code] = status
        assert headers.get("content-type") == "application/json", (code, status, body[:200])
        assert json.loads(body)["error"]["code"] == code, (code, body)
        assert headers.get("x-content-type-options") == "nosniff" and headers.get("x-frame-options") == "DENY", headers
        assert "evil.example" not in headers.get("location", ""), headers
    # A 429 keeps the headers too (the issue found it without them): 60 at once from one client, burst 40.
    limited = None
    for _ in range(60):
        status, headers, body = raw(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        if status == 429:
            limited = headers, body
            break
    assert limited is not None, "60 requests at once from one client were never limited"
    headers, body = limited
    assert json.loads(body)["error"]["code"] == "rate_limited" and headers.get("retry-after") == "1", (headers, body)
    assert headers.get("x-content-type-options") == "nosniff" and headers.get("x-frame-options") == "DENY", headers
    assert headers.get("content-security-policy"), headers
    seen["rate_limited"] = 429
    figures.add("edge: nginx's own errors through the published port", ", ".join(f"{c} {s}" for c, s in seen.items()),
                "JSON with the security headers", True,
                "GET /static//x with Host: evil.example is the JSON 404, no Location (was a 308 to evil.example)")
