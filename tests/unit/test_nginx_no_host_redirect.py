"""No answer of the app carries a Location built from the client's Host header (issue 11, item 5).

Werkzeug's duplicate-slash redirect did: `GET /static//x` with `Host: evil.example` answered
`308 Location: http://evil.example/static/x` (a redirect anyone can aim through a cache or a link).
The app turns merge_slashes off; nginx's side (absolute_redirect off, no `return 30x ...$host`) is
checked in test_nginx_edge_limits.py, both together through a container in tests/reliability/test_edge_abuse.py.
"""

from __future__ import annotations

import pytest
from toxic_service.api import create_app

# Not "//livez": the test client reads it as a scheme-relative URL (host "livez"), not a path.
PATHS = ["/static//x", "/livez//x", "/static//app.js", "/livez//", "/openapi.json/", "/metrics/", "/x//y"]


@pytest.fixture(scope="module")
def client(tiny_settings):
    return create_app(tiny_settings).test_client()


@pytest.mark.parametrize("path", PATHS)
def test_no_redirect_is_built_from_host(client, path):
    answer = client.get(path, headers={"Host": "evil.example"})
    assert "Location" not in answer.headers, (path, answer.status_code, answer.headers.get("Location"))
    assert answer.status_code < 300 or answer.status_code >= 400, (path, answer.status_code)
    if answer.status_code == 404:
        assert answer.json == {"error": {"code": "not_found", "message": "no such route; see /openapi.json"}}


def test_a_trailing_slash_does_not_reach_metrics_past_nginx(client):
    """strict_slashes stays on: /metrics/ would otherwise serve /metrics beside nginx's exact-path guard."""
    assert client.get("/metrics/").status_code == 404
