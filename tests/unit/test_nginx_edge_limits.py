"""The edge's abuse limits, through a real nginx running the role's template on loopback.

Per client (an IPv4 address, an IPv6 /64): requests in progress (limit_conn), heavy bodies on their own
lower rate, a deadline for the request head, a per-read body timeout answered with the table's JSON 408,
bodies in a small in-memory buffer (the rest in a temp file), and the unknown-Host catch-all answering
nginx's own errors as JSON too. Clients are real peers on loopback: a socket bound to 127.0.0.2 or
127.0.0.3 before it connects is another client to nginx. The upstream is a stand-in on the unix socket.
Needs an nginx binary, as test_nginx_error_pages.py (which renders the template) says. The same limits
through a provisioned container's published port, with latency figures: tests/reliability/test_edge_abuse.py.
"""

from __future__ import annotations

import re
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from test_nginx_error_pages import (  # noqa: F401 (pytestmark: the skip)
    NGINX_BIN,
    _free_port,
    check_json_error,
    pytestmark,
    render,
    start_nginx,
)

ANSWER = b"upstream answered"


def _upstream(path: Path, delay: float = 0.0) -> socket.socket:
    """A stand-in for gunicorn: every request gets 200 and ANSWER (after `delay` s)."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(64)

    def answer(conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            time.sleep(delay)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n%s" % (len(ANSWER), ANSWER))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed at the end of the test
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener


class Front:
    """nginx on a free loopback port with the template rendered for a test, and its upstream stand-in."""

    def __init__(self, tmp: Path, delay: float = 0.0, **overrides) -> None:
        self.tmp, self.port = tmp, _free_port()
        upstream = tmp / "gunicorn.sock"
        conf = render(tmp, self.port, upstream, **overrides)
        self.listener = _upstream(upstream, delay)
        try:
            self.process = start_nginx(tmp, conf, self.port)
        except RuntimeError:
            self.listener.close()
            raise

    def connect(self, source: str = "127.0.0.2") -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10, source_address=(source, 0))

    def ask(self, payload: bytes, source: str = "127.0.0.2") -> tuple[int, dict[str, str], bytes]:
        with self.connect(source) as conn:
            conn.sendall(payload)
            return read_answer(conn)

    def worker_rss_kib(self) -> int:
        """The nginx worker's resident memory (the master holds no connections)."""
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True,
                                  text=True, check=False).stdout.split()
        total = 0
        for pid in children:
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))
        return total

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.listener.close()


def read_answer(conn: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    if not data:
        return 0, {}, b""  # closed with no answer
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.fixture()
def front(tmp_path, request):
    made: list[Front] = []

    def make(delay: float = 0.0, **overrides) -> Front:
        where = tmp_path / f"nginx{len(made)}"
        where.mkdir()
        made.append(Front(where, delay, **overrides))
        return made[-1]

    yield make
    for one in made:
        one.close()


def get(path: str = "/livez", host: str = "x") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


def post_head(length: int, host: str = "x") -> bytes:
    return (f"POST /detect-toxic HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()


# ------------------------------------------------------------------------------------ slow clients


def test_a_request_head_sent_a_byte_at_a_time_is_cut_at_the_header_deadline(front):
    nginx = front(nginx_client_header_timeout="2s")
    started = time.monotonic()
    with nginx.connect() as conn:
        conn.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
        closed = None
        for _ in range(40):  # a header line every 0.25 s, for at most 10 s: never a complete head
            try:
                conn.sendall(b"X-Slow: 1\r\n")
                conn.settimeout(0.25)
                if conn.recv(65536) == b"":
                    closed = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                closed = time.monotonic() - started
                break
    print(f"\nslow head (a line every 0.25 s) closed after {closed} s (client_header_timeout 2s)")
    assert closed is not None and 1.8 <= closed <= 3.5, closed


def test_a_stalled_body_is_closed_at_the_body_timeout(front):
    """nginx sends no 408 (it ends a timed-out request without an answer; 408 is in its access log only)."""
    nginx = front(nginx_client_body_timeout="1s")
    with nginx.connect() as conn:
        conn.sendall(post_head(100) + b'{"sequence": ')
        started = time.monotonic()
        status, headers, body = read_answer(conn)
    waited = time.monotonic() - started
    print(f"\nstalled body closed after {waited:.1f} s with {status or 'no answer'} (client_body_timeout 1s)")
    assert (status, body) == (0, b"") and 0.8 <= waited < 3, (status, body, waited)


def test_requests_in_progress_are_limited_per_client(front):
    nginx = front(nginx_conn_limit=2)
    held = [nginx.connect() for _ in range(2)]
    try:
        for conn in held:  # heads read, bodies pending: both count against the client's two
            conn.sendall(post_head(1000) + b"{")
        time.sleep(0.3)
        status, headers, body = nginx.ask(get())
        check_json_error(status, headers, body, "rate_limited")
        assert headers["retry-after"] == "1"
        assert nginx.ask(get(), source="127.0.0.3")[0] == 200, "another client must still be served"
    finally:
        for conn in held:
            conn.close()
    time.sleep(0.3)
    assert nginx.ask(get())[0] == 200, "the client's limit must free up when its requests end"


def test_slow_bodies_hold_little_memory(front):
    """200 bodies stalled after 256 KiB each: with a 1 MiB in-memory buffer that is 50 MiB in the worker."""
    nginx = front(nginx_rate_limit_exempt=["127.0.0.1"], nginx_worker_connections=1024,
                  nginx_client_max_body_size=1024 * 1024)
    count, sent = 200, 256 * 1024
    before = nginx.worker_rss_kib()
    conns = []
    try:
        chunk = b"x" * sent
        for _ in range(count):
            conn = nginx.connect(source="127.0.0.1")
            conn.sendall(post_head(1024 * 1024 - 1024) + chunk)
            conns.append(conn)
        time.sleep(1.0)  # nginx reads what was sent
        after = nginx.worker_rss_kib()
        for conn in conns:  # still waiting for the rest of the body: no answer (a 413 would be one)
            conn.setblocking(False)
            with pytest.raises(BlockingIOError):
                conn.recv(1)
    finally:
        for conn in conns:
            conn.close()
    growth_mib = (after - before) / 1024
    print(f"\nnginx worker RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB with {count} bodies stalled after "
          f"{sent // 1024} KiB ({growth_mib * 1024 / count:.0f} KiB per connection)")
    assert growth_mib < 15, f"{growth_mib:.1f} MiB for {count} slow bodies: bodies held in memory"


# ------------------------------------------------------------------------------------------- work


def render_text(**overrides) -> str:
    """The rendered template's text (no nginx needed)."""
    with tempfile.TemporaryDirectory() as where:
        return render(Path(where), 1, Path(where) / "s", **overrides).read_text()


def heavy_regex(limit: int) -> re.Pattern[str]:
    """The template's light-body pattern for nginx_heavy_body_bytes=`limit`, as rendered."""
    conf = render_text(nginx_heavy_body_bytes=limit)
    line = next(line for line in conf.splitlines() if '"~^(' in line and ")?:$" in line)
    return re.compile(line.split('"')[1][1:])


@pytest.mark.parametrize("limit", [1, 9, 10, 999, 1000, 4096, 32768, 65535, 100000])
def test_the_heavy_body_pattern_matches_exactly_the_light_sizes(limit):
    pattern = heavy_regex(limit)
    sizes = set(range(0, min(limit, 2000) + 50)) | {limit - 1, limit, limit + 1, limit * 10, 10**7}
    for size in sorted(s for s in sizes if s >= 0):
        assert bool(pattern.fullmatch(f"{size}:")) == (size <= limit), (limit, size)
    assert pattern.fullmatch(":"), "no body at all is light"
    assert not pattern.fullmatch(":chunked") and not pattern.fullmatch("10:chunked"), "a chunked body is heavy"


def test_heavy_bodies_have_their_own_lower_rate(front):
    nginx = front(nginx_rate_limit="100r/s", nginx_rate_limit_burst=100, nginx_heavy_body_bytes=4096,
                  nginx_heavy_rate_limit="1r/m", nginx_heavy_rate_limit_burst=2)
    heavy = post_head(4097) + b"x" * 4097
    answers = [nginx.ask(heavy)[0] for _ in range(5)]
    light = [nginx.ask(post_head(4096) + b"x" * 4096)[0] for _ in range(5)]
    chunked = nginx.ask(b"POST /detect-toxic HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                        b"Connection: close\r\n\r\n1\r\nx\r\n0\r\n\r\n")
    other = nginx.ask(heavy, source="127.0.0.3")[0]
    print(f"\nheavy x5: {answers}; light x5 after them: {light}; chunked: {chunked[0]}; another client's heavy: {other}")
    assert answers == [200, 200, 200, 429, 429], answers  # the first, then a burst of 2
    assert light == [200] * 5, "light requests keep the ordinary rate"
    check_json_error(*chunked, "rate_limited")
    assert other == 200


# --------------------------------------------------------------------------- the IPv6 /64 key


def test_the_client_key_of_an_ipv6_address_is_its_64():
    conf = render_text()
    line = next(line for line in conf.splitlines() if "$toxic_ipv6_64;" in line)
    pattern = re.compile(line.split('"')[1][1:].replace("(?<", "(?P<").encode())  # PCRE (?<n>) is Python (?P<n>)
    v6a = socket.inet_pton(socket.AF_INET6, "2001:db8:5:1::a")
    v6b = socket.inet_pton(socket.AF_INET6, "2001:db8:5:1:ffff:a0a:a0a:a0a")  # 0x0a bytes: newlines to a regex
    v6c = socket.inet_pton(socket.AF_INET6, "2001:db8:5:2::a")
    keys = {}
    for name, address in {"a": v6a, "b": v6b, "c": v6c, "v4": socket.inet_aton("192.0.2.10")}.items():
        match = pattern.match(address)
        keys[name] = match.group("toxic_ipv6_64") if match else address
    assert keys["a"] == keys["b"] == v6a[:8] and keys["c"] == v6c[:8] != keys["a"]
    assert keys["v4"] == socket.inet_aton("192.0.2.10"), "IPv4 keeps the whole address"
    # The same map is what both limits use.
    assert "1 $toxic_client;" in conf and "limit_conn_zone $toxic_rate_key" in conf


# --------------------------------------------------------------------------- the catch-all


def test_the_unknown_host_catch_all_answers_errors_as_json_and_closes_on_others(front):
    nginx = front(nginx_server_name="svc.example")
    status, headers, body = nginx.ask(get(host="evil.example"))
    assert (status, body) == (0, b""), "an unknown Host is closed unanswered (444)"
    assert nginx.ask(get(host="svc.example"))[0] == 200
    for payload, code in [(b"GARBAGE\x01 / HTTP/1.1\r\n\r\n", "bad_request"),
                          (get("/" + "a" * 9000, host="evil.example"), "uri_too_long"),
                          (get("/livez", host="evil.example")[:-2] + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n",
                           "headers_too_large")]:
        status, headers, body = nginx.ask(payload)
        check_json_error(status, headers, body, code)


def test_no_redirect_from_nginx_is_built_from_host():
    conf = render_text()
    assert re.search(r"^\s*absolute_redirect off;", conf, re.M)
    assert not re.search(r"return 30[1278] [^;]*\$host", conf), "a redirect built from the client's Host"


def test_every_server_has_the_json_pages_and_headers():
    conf = render_text(nginx_server_name="svc.example")
    servers = conf.split("\n    server {")[1:]
    assert len(servers) == 2
    for server in servers:
        assert "error_page 400 =400 /.toxic-error/bad_request;" in server
        assert "add_header X-Content-Type-Options $toxic_xcto always;" in server
