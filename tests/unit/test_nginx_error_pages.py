"""nginx's own errors, answered by a real nginx running the role's template: JSON from the one error table.

Needs an nginx binary: TOXIC_TEST_NGINX=/path/to/nginx, or `nginx` on PATH / in /usr/sbin. Without one
the test skips with that reason (the template is still checked as text in test_error_vocabulary.py).
nginx runs unprivileged-style on a free loopback port, with every path under the test's tmp_path.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import jinja2
import jsonschema
import pytest
from toxic_service.api.openapi import build_openapi
from toxic_service.api.validation import Limits
from toxic_service.errors import ERRORS, NGINX

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "roles" / "nginx" / "templates" / "nginx.conf.j2"
BODY_LIMIT = 16384


def _nginx() -> str | None:
    given = os.environ.get("TOXIC_TEST_NGINX")
    if given:
        return given
    return shutil.which("nginx") or (shutil.which("nginx", path="/usr/sbin:/sbin"))


NGINX_BIN = _nginx()
pytestmark = pytest.mark.skipif(NGINX_BIN is None, reason="no nginx binary here: set TOXIC_TEST_NGINX")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mime_types() -> str:
    for candidate in (Path(NGINX_BIN).resolve().parents[2] / "etc" / "nginx" / "mime.types", Path("/etc/nginx/mime.types")):
        if candidate.is_file():
            return str(candidate)
    pytest.skip("no mime.types next to the nginx binary nor in /etc/nginx")


def render(tmp: Path, port: int, socket_path: Path, **overrides) -> Path:
    """The role's template with its variables for a loopback test (`overrides` replace some), paths moved under `tmp`."""
    variables = {
        "ansible_managed": "test",
        "__nginx_user": getpass.getuser(),
        "__nginx_pid": str(tmp / "nginx.pid"),
        "nginx_worker_connections": 64,
        "nginx_client_max_body_size": BODY_LIMIT,
        "nginx_rate_limit_exempt": [],
        "nginx_rate_limit": "2r/s",
        "nginx_rate_limit_burst": 2,
        "nginx_content_security_policy": "default-src 'none'",
        "nginx_upstream_socket": str(socket_path),
        "nginx_server_name": "_",
        "nginx_tls": False,
        "nginx_proxy_connect_timeout": "1s",
        "nginx_proxy_read_timeout": "1s",
        "nginx_proxy_send_timeout": "1s",
        "nginx_hsts_max_age": 1,
        "nginx_certbot_webroot": str(tmp),
        "nginx_metrics_allow": [],
        "nginx_conn_limit": 10,
        "nginx_heavy_body_bytes": 32768,
        "nginx_heavy_rate_limit": "2r/s",
        "nginx_heavy_rate_limit_burst": 4,
        "nginx_client_header_timeout": "10s",
        "nginx_client_body_timeout": "10s",
        "nginx_send_timeout": "10s",
        "nginx_keepalive_timeout": "10s",
        "nginx_client_body_buffer_size": "16k",
        **overrides,
    }
    text = jinja2.Template(TEMPLATE.read_text(), keep_trailing_newline=True, undefined=jinja2.StrictUndefined).render(
        **variables
    )
    # Only what a test run cannot have changes: ports, absolute system paths, the conf.d include.
    text = text.replace("listen 80 default_server;", f"listen 127.0.0.1:{port} default_server;")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{port};")  # the named server beside a catch-all
    text = re.sub(r"\n\s*listen \[::\]:80( default_server)?;", "", text)
    text = text.replace("/var/log/nginx/", f"{tmp}/")
    text = text.replace("include /etc/nginx/mime.types;", f"include {_mime_types()};")
    text = text.replace("include /etc/nginx/conf.d/*.conf;", "")
    temps = "".join(f"    {kind}_temp_path {tmp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = text.replace("http {\n", "http {\n" + temps, 1)
    conf = tmp / "nginx.conf"
    conf.write_text(text)
    return conf


def start_nginx(tmp: Path, conf: Path, port: int) -> subprocess.Popen:
    """nginx on `conf` (checked with -t first) once it accepts connections on `port`; the caller terminates it."""
    args = [NGINX_BIN, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "error.log")]
    subprocess.run([*args, "-t", "-q"], check=True)
    process = subprocess.Popen([*args, "-g", "daemon off;"])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                process.wait(timeout=10)
                raise RuntimeError(f"nginx did not start: {(tmp / 'error.log').read_text()}") from None
            time.sleep(0.1)


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nginx")
    port = _free_port()
    upstream = tmp / "gunicorn.sock"
    process = start_nginx(tmp, render(tmp, port, upstream), port)
    try:
        yield port, upstream
    finally:
        process.terminate()
        process.wait(timeout=10)


def raw(port: int, payload: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(payload)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def get(path: str, extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"Connection: close\r\n\r\n"


CASES = {
    "bad_request": get("/livez", b"Host: y\r\n"),  # two Host headers
    "bad_request NUL in the path": get("/static/%00"),  # refused while nginx parses the request line
    "not_found": get("/.toxic-error/bad_request"),  # the error pages are internal
    "payload_too_large": b"POST /detect-toxic HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {BODY_LIMIT + 1}\r\nConnection: close\r\n\r\n".encode()
    + b"x" * (BODY_LIMIT + 1),
    "uri_too_long": get("/" + "a" * 9000),  # over large_client_header_buffers: found while reading the request line
    "headers_too_large": get("/livez", b"X-Big: " + b"a" * 9000 + b"\r\n"),
    "not_implemented": b"POST /detect-toxic HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n",
    "bad_gateway": get("/livez"),  # nothing listens on the upstream socket
}
# Not provoked here: internal_error (nginx's own 500), unavailable (503: limit_req answers 429) and
# gateway_timeout (504, below with a silent upstream); their pages are checked as text.
SPEC = build_openapi(Limits(max_text_chars=100, max_batch=8, max_body_bytes=BODY_LIMIT), ("toxic",))
ERROR_SCHEMA = {**SPEC["components"]["schemas"]["Error"], "components": SPEC["components"]}


def check_json_error(status: int, headers: dict[str, str], body: bytes, code: str) -> None:
    assert headers["content-type"] == "application/json", body[:200]
    doc = json.loads(body)
    jsonschema.validate(doc, ERROR_SCHEMA)
    error = ERRORS[doc["error"]["code"]]
    assert (error.code, error.status) == (code, status), doc
    assert NGINX in error.emitted_by
    assert doc["error"]["message"] == error.message.format(limit=BODY_LIMIT)
    # nginx's own answers keep the server's security headers.
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("case", list(CASES))
def test_nginx_answers_its_own_errors_with_the_table_json(front, case):
    port, _ = front
    status, headers, body = raw(port, CASES[case])
    check_json_error(status, headers, body, case.split()[0])
    assert "retry-after" not in headers


def test_rate_limited_answers_are_json_429_with_retry_after(front):
    port, _ = front
    answers = [raw(port, get("/livez")) for _ in range(8)]  # 2 r/s, burst 2: most of 8 at once are refused
    limited = [a for a in answers if a[0] == 429]
    assert limited, [a[0] for a in answers]
    for status, headers, body in limited:
        check_json_error(status, headers, body, "rate_limited")
        assert headers["retry-after"] == "1"


def test_a_silent_upstream_is_a_json_504(front):
    port, upstream = front
    time.sleep(1.1)  # out of the previous test's rate limit
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(upstream))
    listener.listen(4)
    held: list[socket.socket] = []

    def accept() -> None:  # accept and say nothing: nginx's proxy_read_timeout (1 s) runs out
        conn, _ = listener.accept()
        held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        status, headers, body = raw(port, get("/livez"))
    finally:
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()
        upstream.unlink()
    check_json_error(status, headers, body, "gateway_timeout")
