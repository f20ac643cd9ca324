"""One JSON error vocabulary (toxic_service.errors.ERRORS) for the app, gunicorn and nginx, and the OpenAPI document.

Each claim is checked from the outside: the nginx template is parsed as text, gunicorn's
error writer is called on a real socket, the app's errors come from real requests.
"""

from __future__ import annotations

import inspect
import json
import re
import socket
from pathlib import Path

import jsonschema
import pytest
from toxic_service import errors as errors_module
from toxic_service import nginx_errors
from toxic_service.api.openapi import ROUTE_STATUSES, build_openapi
from toxic_service.api.validation import Limits
from toxic_service.errors import APP, ERRORS, GUNICORN, NGINX, ToxicServiceError, error_body, error_for, error_json

TEMPLATE = Path(__file__).resolve().parents[2] / "roles" / "nginx" / "templates" / "nginx.conf.j2"
LIMITS = Limits(max_text_chars=500, max_batch=8, max_body_bytes=8192)
# What the issue names as statuses a client meets from the front, on any route.
FRONT = (413, 414, 429, 502, 503, 504)


@pytest.fixture(scope="module")
def spec():
    return build_openapi(LIMITS, ("toxic", "insult"))


def error_schema(spec) -> dict:
    return {**spec["components"]["schemas"]["Error"], "components": spec["components"]}


def nginx_pages(text: str) -> dict[int, dict]:
    """{status sent: body} of every `error_page` in the template, read as nginx would (each through its location)."""
    pages = re.findall(r"^\s*error_page (\d+) (\S+) (\S+);", text, re.M)
    locations = {
        uri: (int(status), body)
        for uri, status, body in re.findall(r"location = (\S+) \{\s*internal;[^}]*?return (\d+) '(.*)';", text, re.M)
    }
    out = {}
    for raised, sent, uri in pages:
        # A named location (@name) cannot serve a request whose line nginx could not read (no URI yet):
        # nginx answered a 414 or a garbled request line with its own HTML 500 (seen with nginx 1.22).
        assert uri.startswith("/") and sent.startswith("="), f"error_page {raised} {sent} {uri}: use '=status /uri'"
        assert uri in locations, f"error_page {raised} points at {uri}, which the template has no internal location for"
        returned, body = locations[uri]
        assert f"={returned}" == sent, f"{uri} answers {returned} for error_page {raised} {sent}"
        assert body.endswith("\\n"), uri
        # The role's variable, as Ansible would fill it in.
        out[returned] = json.loads(body[: -len("\\n")].replace("{{ nginx_client_max_body_size }}", "8192"))
    return out


def test_every_exception_type_has_its_code_and_status_from_the_table():
    classes = [c for _, c in inspect.getmembers(errors_module, inspect.isclass) if issubclass(c, ToxicServiceError)]
    assert len(classes) >= 9
    for cls in classes:
        assert cls.code in ERRORS, cls
        assert cls.status == ERRORS[cls.code].status, cls


def test_a_class_with_a_code_the_table_lacks_cannot_even_be_defined():
    with pytest.raises(KeyError, match="made_up"):
        type("MadeUp", (ToxicServiceError,), {"code": "made_up"})


def test_the_body_builder_refuses_codes_outside_the_table_and_fills_in_the_default_message(spec):
    with pytest.raises(KeyError):
        error_body("made_up")
    assert error_body("rate_limited") == {"error": {"code": "rate_limited", "message": ERRORS["rate_limited"].message}}
    body = error_json("not_ready", "still loading")
    assert body.endswith(b"\n") and body.count(b"\n") == 1
    jsonschema.validate(json.loads(body), error_schema(spec))


def test_nginx_error_pages_in_the_template_are_the_ones_the_table_renders():
    text = TEMPLATE.read_text()
    assert nginx_errors.template_blocks(text) == nginx_errors.render_blocks(), (
        "nginx.conf.j2's error pages differ from toxic_service.errors.ERRORS: run "
        "`python -m toxic_service.nginx_errors roles/nginx/templates/nginx.conf.j2`"
    )
    assert nginx_errors.rewrite(text) == text


def test_every_nginx_error_body_is_a_table_code_with_its_status_and_message(spec):
    pages = nginx_pages(TEMPLATE.read_text())
    assert set(FRONT) <= set(pages), sorted(pages)
    for status, body in pages.items():
        jsonschema.validate(body, error_schema(spec))
        error = ERRORS[body["error"]["code"]]
        assert error.status == status and NGINX in error.emitted_by, (status, error)
        assert body["error"]["message"] == error.message.format(limit=8192)
    # ... and every code the table gives nginx has its page.
    assert {e.status for e in ERRORS.values() if NGINX in e.emitted_by} == set(pages)


def test_the_nginx_parser_above_catches_a_drifted_template():
    drifted = TEMPLATE.read_text().replace('"code": "rate_limited"', '"code": "slow_down"', 1)
    with pytest.raises(KeyError, match="slow_down"):
        for body in nginx_pages(drifted).values():
            ERRORS[body["error"]["code"]]
    assert nginx_errors.template_blocks(drifted) != nginx_errors.render_blocks()


def test_the_rate_limit_answer_says_when_to_retry():
    text = TEMPLATE.read_text()
    assert re.search(r"map \$status \$toxic_retry_after \{\s*429 1;", text)
    assert "add_header Retry-After $toxic_retry_after always;" in text
    # A location with its own add_header would drop the server's security headers (nginx inheritance).
    locations = re.findall(r"location = /\.toxic-error/\w+ \{[^}]*\}", text)
    assert len(locations) == len(nginx_pages(text))
    for location in locations:
        assert "add_header" not in location, location


def test_a_message_nginx_cannot_quote_is_refused(monkeypatch):
    monkeypatch.setitem(ERRORS, "rate_limited", ERRORS["rate_limited"].__class__("rate_limited", 429, "don't", (NGINX,)))
    with pytest.raises(ValueError, match="quote"):
        nginx_errors.render_blocks()


def _gunicorn_answer(status: int, reason: str, mesg: str) -> tuple[int, dict[str, str], bytes]:
    from gunicorn import util
    from toxic_service import gunicorn_conf  # noqa: F401 - installs the JSON writer

    ours, theirs = socket.socketpair()
    with ours, theirs:
        util.write_error(ours, status, reason, mesg)
        ours.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := theirs.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert int(headers["content-length"]) == len(body)
    return int(lines[0].split()[1]), headers, body


# Every (status, reason) gunicorn's workers/base.py handle_error passes to util.write_error.
GUNICORN_ANSWERS = [
    (400, "Bad Request", "Invalid Request Line 'x'"),
    (403, "Forbidden", "Request forbidden"),
    (414, "URI Too Long", "line too long"),
    (417, "Expectation Failed", "Unable to comply with expectation"),
    (431, "Request Header Fields Too Large", "Error parsing headers: 'x'"),
    (500, "Internal Server Error", ""),
    (501, "Not Implemented", "Unsupported transfer coding"),
]


@pytest.mark.parametrize(("status", "reason", "mesg"), GUNICORN_ANSWERS)
def test_gunicorn_errors_are_table_codes_documented_on_every_route(spec, status, reason, mesg):
    got, headers, raw = _gunicorn_answer(status, reason, mesg)
    body = json.loads(raw)
    assert got == status and headers["content-type"] == "application/json"
    jsonschema.validate(body, error_schema(spec))
    error = ERRORS[body["error"]["code"]]
    assert error.status == status and GUNICORN in error.emitted_by
    assert body["error"]["message"] == (mesg if status < 500 else error.message)
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            documented = operation["responses"][str(status)]["content"]["application/json"]["schema"]
            ours = documented["anyOf"][0] if "anyOf" in documented else documented  # Perspective: ours or Google's
            enum = ours["allOf"][1]["properties"]["error"]["properties"]
            assert error.code in enum["code"]["enum"], (path, status)


def test_a_status_the_table_lacks_is_answered_as_its_fallback_code_and_status():
    got, _, raw = _gunicorn_answer(418, "I'm a teapot", "short and stout")
    assert got == 400 and json.loads(raw)["error"]["code"] == "bad_request"
    assert error_for(599, GUNICORN).code == "internal_error"


def test_every_route_documents_every_status_a_client_can_see_from_the_front(spec):
    front = {e.status for e in ERRORS.values() if e.http and set(e.emitted_by) - {APP}}
    assert set(FRONT) <= front
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            documented = {int(s) for s in operation["responses"] if s not in ("200", "default")}
            assert front | set(ROUTE_STATUSES[path]) == documented, (path, method)
    retry = spec["paths"]["/livez"]["get"]["responses"]["429"]
    assert "Retry-After" in retry["headers"]


def test_every_http_code_is_in_the_error_schema_and_cli_only_codes_are_not(spec):
    enum = spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    assert set(enum) == {e.code for e in ERRORS.values() if e.http}
    assert "bundle_error" not in enum and "rate_limited" in enum and "bad_gateway" in enum


def test_the_body_limit_is_a_machine_readable_field(spec):
    body = spec["paths"]["/detect-toxic"]["post"]["requestBody"]
    assert body["x-max-body-bytes"] == LIMITS.max_body_bytes
    assert "8192" in spec["paths"]["/detect-toxic"]["post"]["responses"]["413"]["description"]
