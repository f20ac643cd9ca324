"""Bad requests of every kind, as data: what to send and the JSON error expected back.

Used by tests/unit/test_api.py (Flask test client), tests/integration/
test_gunicorn.py (real gunicorn) and the reliability suite (through nginx).
Each case must leave the service unchanged: callers check /readyz after it.

`cases(limits)` takes the limits in force (Settings.max_text_chars, max_batch,
max_body_bytes) so oversize cases are just over them, never huge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class BadInput:
    name: str
    method: str
    path: str
    body: bytes | None
    status: int
    code: str
    headers: dict[str, str] = field(default_factory=dict)
    message_contains: str = ""  # a fragment of error.message (lowercase)
    allow: str = ""  # for 405: the Allow header expected
    chunked: bool = False  # send the body with Transfer-Encoding: chunked (no Content-Length)


def _j(doc: object) -> bytes:
    return json.dumps(doc).encode()


def cases(max_text_chars: int, max_batch: int, max_body_bytes: int) -> list[BadInput]:
    long_text = "a" * (max_text_chars + 1)
    deep = b"[" * 100_000 + b"]" * 100_000
    if len(deep) > max_body_bytes:
        deep = b"[" * (max_body_bytes // 2 - 1) + b"]" * (max_body_bytes // 2 - 1)
    big_body = b'{"sequence": "' + b"x" * max_body_bytes + b'"}'
    post = "POST"
    path = "/detect-toxic"
    c = [
        # Routing
        BadInput("unknown route", "GET", "/nope", None, 404, "not_found", message_contains="no such route"),
        BadInput("route with trailing segment", post, "/detect-toxic/extra", _j({"sequence": "hi"}), 404, "not_found", JSON),
        BadInput("GET on detect", "GET", path, None, 405, "method_not_allowed", allow="POST"),
        BadInput("PUT on detect", "PUT", path, _j({"sequence": "hi"}), 405, "method_not_allowed", JSON, allow="POST"),
        BadInput("DELETE on detect", "DELETE", path, None, 405, "method_not_allowed", allow="POST"),
        BadInput("OPTIONS on detect", "OPTIONS", path, None, 405, "method_not_allowed", allow="POST"),
        BadInput("POST on livez", post, "/livez", _j({}), 405, "method_not_allowed", JSON, allow="GET, HEAD"),
        BadInput("DELETE on readyz", "DELETE", "/readyz", None, 405, "method_not_allowed", allow="GET, HEAD"),
        BadInput("POST on metrics", post, "/metrics", b"x", 405, "method_not_allowed", allow="GET, HEAD"),
        # Content type
        BadInput("no content type", post, path, _j({"sequence": "hi"}), 415, "unsupported_media_type"),
        BadInput("text/plain", post, path, b"hi", 415, "unsupported_media_type", {"Content-Type": "text/plain"}),
        BadInput(
            "form encoded",
            post,
            path,
            b"sequence=hi",
            415,
            "unsupported_media_type",
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
        BadInput(
            "multipart",
            post,
            path,
            b"--b\r\n\r\nhi\r\n--b--\r\n",
            415,
            "unsupported_media_type",
            {"Content-Type": "multipart/form-data; boundary=b"},
        ),
        BadInput(
            "JSON in latin-1",
            post,
            path,
            _j({"sequence": "hi"}),
            415,
            "unsupported_media_type",
            {"Content-Type": "application/json; charset=latin-1"},
            message_contains="charset",
        ),
        # Body is not valid JSON
        BadInput("empty body", post, path, b"", 400, "bad_request", JSON, message_contains="empty"),
        BadInput("truncated JSON", post, path, b'{"sequence": "hi"', 400, "bad_request", JSON, message_contains="not valid json"),
        BadInput(
            "form data labelled JSON", post, path, b"sequence=hi", 400, "bad_request", JSON, message_contains="not valid json"
        ),
        BadInput("invalid UTF-8", post, path, b'{"sequence": "\xff\xfe hi"}', 400, "bad_request", JSON, message_contains="utf-8"),
        BadInput("UTF-8 byte order mark", post, path, b'\xef\xbb\xbf{"sequence": "hi"}', 400, "bad_request", JSON),
        BadInput(
            "NaN literal", post, path, b'{"sequence": "hi", "padding": NaN}', 400, "bad_request", JSON, message_contains="nan"
        ),
        BadInput(
            "Infinity literal",
            post,
            path,
            b'{"sequences": ["hi"], "padding": -Infinity}',
            400,
            "bad_request",
            JSON,
            message_contains="infinity",
        ),
        BadInput(
            "duplicate key",
            post,
            path,
            b'{"sequence": "hi", "sequence": "ho"}',
            400,
            "bad_request",
            JSON,
            message_contains="duplicate",
        ),
        BadInput("deeply nested arrays", post, path, deep, 400, "bad_request", JSON),
        # Wrong shape
        BadInput("top-level array", post, path, _j(["hi"]), 400, "bad_request", JSON, message_contains="object"),
        BadInput("top-level string", post, path, _j("hi"), 400, "bad_request", JSON, message_contains="object"),
        BadInput("top-level null", post, path, b"null", 400, "bad_request", JSON, message_contains="object"),
        BadInput("empty object", post, path, _j({}), 400, "bad_request", JSON, message_contains="neither"),
        BadInput(
            "padding only (seed body without text)",
            post,
            path,
            _j({"padding": 100}),
            400,
            "bad_request",
            JSON,
            message_contains="neither",
        ),
        BadInput(
            "both sequence and sequences",
            post,
            path,
            _j({"sequence": "a", "sequences": ["b"]}),
            400,
            "bad_request",
            JSON,
            message_contains="both",
        ),
        BadInput("misspelt field", post, path, _j({"sequense": "hi"}), 400, "bad_request", JSON, message_contains="unknown"),
        BadInput("sequence is a number", post, path, _j({"sequence": 42}), 400, "bad_request", JSON, message_contains="string"),
        BadInput("sequence is null", post, path, _j({"sequence": None}), 400, "bad_request", JSON, message_contains="null"),
        BadInput(
            "sequence is a boolean", post, path, _j({"sequence": True}), 400, "bad_request", JSON, message_contains="boolean"
        ),
        BadInput("sequence is a list", post, path, _j({"sequence": ["hi"]}), 400, "bad_request", JSON, message_contains="array"),
        BadInput(
            "sequence is an object",
            post,
            path,
            _j({"sequence": {"text": "hi"}}),
            400,
            "bad_request",
            JSON,
            message_contains="object",
        ),
        BadInput("sequence is empty", post, path, _j({"sequence": ""}), 400, "bad_request", JSON, message_contains="empty"),
        BadInput(
            "sequence is whitespace", post, path, _j({"sequence": " \n\t "}), 400, "bad_request", JSON, message_contains="empty"
        ),
        BadInput(
            "sequence has a lone surrogate",
            post,
            path,
            b'{"sequence": "hi \\ud800 there"}',
            400,
            "bad_request",
            JSON,
            message_contains="surrogate",
        ),
        BadInput(
            "sequences is a string", post, path, _j({"sequences": "hi"}), 400, "bad_request", JSON, message_contains="array"
        ),
        BadInput(
            "sequences is an object",
            post,
            path,
            _j({"sequences": {"a": "hi"}}),
            400,
            "bad_request",
            JSON,
            message_contains="array",
        ),
        BadInput("sequences is empty", post, path, _j({"sequences": []}), 400, "bad_request", JSON, message_contains="empty"),
        BadInput(
            "sequences item is a number",
            post,
            path,
            _j({"sequences": ["hi", 3]}),
            400,
            "bad_request",
            JSON,
            message_contains="sequences[1]",
        ),
        BadInput(
            "sequences item is null",
            post,
            path,
            _j({"sequences": [None]}),
            400,
            "bad_request",
            JSON,
            message_contains="sequences[0]",
        ),
        BadInput(
            "sequences item is a list",
            post,
            path,
            _j({"sequences": [["hi"]]}),
            400,
            "bad_request",
            JSON,
            message_contains="sequences[0]",
        ),
        BadInput(
            "sequences item is empty",
            post,
            path,
            _j({"sequences": ["ok", ""]}),
            400,
            "bad_request",
            JSON,
            message_contains="sequences[1]",
        ),
        # Too large
        BadInput(
            "text over max_text_chars",
            post,
            path,
            _j({"sequence": long_text}),
            413,
            "payload_too_large",
            JSON,
            message_contains=str(max_text_chars),
        ),
        BadInput(
            "batch item over max_text_chars",
            post,
            path,
            _j({"sequences": ["ok", long_text]}),
            413,
            "payload_too_large",
            JSON,
            message_contains="sequences[1]",
        ),
        BadInput(
            "batch over max_batch",
            post,
            path,
            _j({"sequences": ["hi"] * (max_batch + 1)}),
            413,
            "payload_too_large",
            JSON,
            message_contains=str(max_batch),
        ),
        BadInput(
            "body over max_body_bytes", post, path, big_body, 413, "payload_too_large", JSON, message_contains=str(max_body_bytes)
        ),
        BadInput("chunked body over max_body_bytes", post, path, big_body, 413, "payload_too_large", JSON, chunked=True),
    ]
    names = [case.name for case in c]
    assert len(names) == len(set(names)), "case names must be unique"
    return c
