"""/metrics through a real nginx running the role's template: loopback and nginx_metrics_allow only.

/metrics shows every client's traffic (the vocabulary cache's hit and miss counters tell which
words others sent), so nginx answers it only to 127.0.0.1, ::1 and the configured networks; anyone
else gets the table's JSON 404. Other clients are real peers on loopback: the client socket binds
127.0.0.2 or 127.0.0.3 before connecting, so nginx's $remote_addr is that address (the kernel would
otherwise pick 127.0.0.1). The upstream is a stand-in on the unix socket that answers every request
with a recognisable body, so a refusal can only be nginx's.
Needs an nginx binary, as test_nginx_error_pages.py (which renders the template) says.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
from test_nginx_error_pages import _free_port, pytestmark, render, start_nginx  # noqa: F401 (pytestmark: the skip)
from toxic_service.errors import ERRORS

SECRET = b"toxic_vocab_cache_hits_total 12345"


def _upstream(path: Path) -> socket.socket:
    """A stand-in for gunicorn: every request gets 200 and SECRET (what must not reach outsiders)."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(16)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed at the end of the module
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (len(SECRET), SECRET))

    threading.Thread(target=serve, daemon=True).start()
    return listener


def _start(tmp: Path, **overrides):
    port = _free_port()
    upstream = tmp / "gunicorn.sock"
    # Rate limit high enough that this test's few requests never meet it.
    conf = render(tmp, port, upstream, **{"nginx_rate_limit": "100r/s", "nginx_rate_limit_burst": 100, **overrides})
    listener = _upstream(upstream)
    try:
        return port, start_nginx(tmp, conf, port), listener
    except RuntimeError:
        listener.close()
        raise


@pytest.fixture(scope="module", params=[[], ["127.0.0.2/32"]], ids=["loopback only", "allow 127.0.0.2/32"])
def front(request, tmp_path_factory):
    port, process, listener = _start(tmp_path_factory.mktemp("nginx-metrics"), nginx_metrics_allow=request.param)
    try:
        yield port, request.param
    finally:
        process.terminate()
        process.wait(timeout=10)
        listener.close()


def ask(port: int, path: str, source: str) -> tuple[int, bytes]:
    """GET `path` from a client whose address is `source`."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 127.0.0.1\r\nX-Real-IP: 127.0.0.1\r\n"
                     "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


# The path nginx normalizes to /metrics however it is spelled; the app would serve each of them.
SPELLINGS = ["/metrics", "/metrics?format=text", "/%6Detrics", "//metrics", "/static/../metrics"]


@pytest.mark.parametrize("path", SPELLINGS)
def test_metrics_refused_to_other_addresses(front, path):
    port, allowed = front
    outsiders = ["127.0.0.3"] + ([] if allowed else ["127.0.0.2"])
    for source in outsiders:
        status, body = ask(port, path, source)
        assert SECRET not in body, f"{source} read {path}"
        assert status == 404, (source, path, status, body)
        assert json.loads(body) == {"error": {"code": "not_found", "message": ERRORS["not_found"].message}}


def test_metrics_answered_to_loopback_and_the_allowlist(front):
    port, allowed = front
    for source in ["127.0.0.1"] + (["127.0.0.2"] if allowed else []):
        status, body = ask(port, "/metrics", source)
        assert (status, body) == (200, SECRET), source


def test_other_routes_still_answer_everyone(front):
    port, _ = front
    assert ask(port, "/livez", "127.0.0.3") == (200, SECRET)
