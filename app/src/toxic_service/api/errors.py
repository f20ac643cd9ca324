"""The one place where failures become HTTP responses.

Every error is JSON `{"error": {"code", "message"}}`: our own error types
carry their code and status (toxic_service.errors); Werkzeug's routing and
body-limit errors get a code here; anything else is a generic 500 whose
traceback goes to the log, never to the client.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from toxic_service.errors import ToxicServiceError

log = logging.getLogger("toxic_service.api")

# Werkzeug statuses we can produce, and the code clients see for each.
HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

# Every code the API can answer with, by status (the OpenAPI document lists these).
ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: ("bad_request",),
    404: ("not_found",),
    405: ("method_not_allowed",),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    500: ("internal_error",),
    503: ("store_unavailable", "not_ready"),
}


def error_response(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def _own_error(exc: ToxicServiceError) -> Response:
    if exc.status >= 500:
        # Store down / not ready are expected operational states: a warning, no traceback.
        level = logging.WARNING if exc.status == 503 else logging.ERROR
        log.log(level, "request failed", extra={"event": "error", "code": exc.code, "detail": str(exc)})
    message = str(exc) if exc.status != 500 else "internal error; see the service log"
    return error_response(exc.status, exc.code, message)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = HTTP_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
    message = {
        404: "no such route; see /openapi.json",
    }.get(status, exc.description or exc.name)
    if status == 413:
        message = f"the request body is larger than the limit of {current_app.config['MAX_CONTENT_LENGTH']} bytes"
    allow = ", ".join(sorted(exc.valid_methods or ())) if isinstance(exc, MethodNotAllowed) else ""
    if allow:
        message = f"method not allowed here; allowed: {allow}"
    response = error_response(status, code, message)
    if allow:
        response.headers["Allow"] = allow
    return response


def _unexpected(exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc, extra={"event": "error", "code": "internal_error"})
    return error_response(500, "internal_error", "internal error; see the service log")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ToxicServiceError, _own_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
