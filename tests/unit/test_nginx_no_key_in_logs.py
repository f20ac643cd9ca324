"""No API key reaches nginx's logs: Google's Perspective clients send it in the query (?key=).

A real nginx on loopback with the role's template: a request with a key in its query string,
answered, and enough of them to be refused by the rate limit; then neither access.log nor
error.log holds the key, while the access log still records each request (method, path, status).
"""

from __future__ import annotations

import socket

from test_nginx_error_pages import pytestmark  # noqa: F401 (pytestmark: the skip without nginx)
from test_nginx_metrics_access import _start

KEY = "tsk_this-key-must-not-be-logged-0123456789"


def _get(port: int, path: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return int(data.split()[1])


def test_keys_in_the_query_string_stay_out_of_both_logs(tmp_path):
    port, process, listener = _start(tmp_path, nginx_rate_limit="1r/s", nginx_rate_limit_burst=1)
    try:
        statuses = [_get(port, f"/v1alpha1/comments:analyze?key={KEY}&alt=json") for _ in range(8)]
    finally:
        process.terminate()
        process.wait(timeout=10)
        listener.close()
    assert 200 in statuses and 429 in statuses, statuses  # answered and refused requests both logged
    access = (tmp_path / "access.log").read_text()
    errors = (tmp_path / "error.log").read_text()
    assert access.count('"POST /v1alpha1/comments:analyze HTTP/1.1" ') == len(statuses), access
    assert " 429 " in access
    for name, text in (("access.log", access), ("error.log", errors)):
        assert KEY not in text, f"{name} holds the API key:\n{text}"
