"""nginx passes the client's Host to the app with its port: the Perspective discovery document's
rootUrl is built from it, and behind a published port (make demo's 127.0.0.1:8080) `$host`, which
drops the port, sent Google's clients to port 80. A real nginx on loopback in front of an upstream
that answers with the Host header it received.
"""

from __future__ import annotations

import socket
import threading

from test_nginx_error_pages import _free_port, pytestmark, render, start_nginx  # noqa: F401 (pytestmark: the skip)


def _echo_host_upstream(path) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                    data += chunk
                host = next((line.split(b":", 1)[1].strip() for line in data.split(b"\r\n")
                             if line.lower().startswith(b"host:")), b"<none>")
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(host), host))

    threading.Thread(target=serve, daemon=True).start()
    return listener


def _ask(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[2]


def test_the_upstream_sees_the_host_with_its_port(tmp_path):
    port = _free_port()
    conf = render(tmp_path, port, tmp_path / "gunicorn.sock", nginx_rate_limit="100r/s", nginx_rate_limit_burst=100)
    listener = _echo_host_upstream(tmp_path / "gunicorn.sock")
    try:
        process = start_nginx(tmp_path, conf, port)
    except RuntimeError:
        listener.close()
        raise
    try:
        with_port = _ask(port, f"GET /livez HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        assert with_port == f"127.0.0.1:{port}".encode()
        # HTTP/1.0 without a Host: the server's name (`_` here), never an empty Host.
        without = _ask(port, b"GET /livez HTTP/1.0\r\n\r\n")
        assert without not in (b"", b"<none>"), without
    finally:
        process.terminate()
        process.wait(timeout=10)
        listener.close()
