"""The one place where failures become HTTP responses.

Every error is JSON `{"error": {"code", "message"}}`, built by
toxic_service.errors.error_json from the codes in its ERRORS table: our own
error types carry their code; Werkzeug's routing and body-limit errors get
the app's code for their status; anything else is a generic 500 whose
traceback goes to the log, never to the client; a 5xx body is always the table's
message (a store outage's details stay in the log). A response's status is
always its code's status in ERRORS, so the OpenAPI document cannot miss one.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from toxic_service.errors import APP, ERRORS, ToxicServiceError, error_for, error_json

log = logging.getLogger("toxic_service.api")


def error_response(code: str, message: str | None = None) -> Response:
    """The JSON error response for `code` (its status from ERRORS; its default message when none is given)."""
    return Response(error_json(code, message), status=ERRORS[code].status, mimetype="application/json")


def _own_error(exc: ToxicServiceError) -> Response:
    if exc.status >= 500:
        # Store down / not ready are expected operational states: a warning, no traceback.
        level = logging.WARNING if exc.status == 503 else logging.ERROR
        log.log(level, "request failed", extra={"event": "error", "code": exc.code, "detail": str(exc)})
    error = ERRORS[exc.code]
    if APP not in error.emitted_by or error.status == 500:
        # A CLI-only code (bundle_error, ...) or any 500: the client sees the generic code; details stay in the log.
        error = error_for(exc.status, APP)
        return error_response(error.code)
    if error.status >= 500:
        # A store or startup failure's text names internals (a MongoDB driver error carries the
        # server's host:port, database, collection and topology; a file error its path): the
        # client gets the table's message, the details are in the warning logged above.
        return error_response(error.code)
    response = error_response(error.code, str(exc))
    response.headers.update(getattr(exc, "headers", {}))  # Retry-After, WWW-Authenticate (API keys)
    return response


def _http_error(exc: HTTPException) -> Response:
    error = error_for(exc.code or 500, APP)
    message = exc.description or exc.name
    if error.code == "not_found":
        message = None  # the table's, which points at /openapi.json
    elif error.code == "payload_too_large":
        message = error.message.format(limit=current_app.config["MAX_CONTENT_LENGTH"])
    elif error.status >= 500:
        message = None
    allow = ", ".join(sorted(exc.valid_methods or ())) if isinstance(exc, MethodNotAllowed) else ""
    if allow:
        message = f"method not allowed here; allowed: {allow}"
    response = error_response(error.code, message)
    if allow:
        response.headers["Allow"] = allow
    return response


def _unexpected(exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc, extra={"event": "error", "code": "internal_error"})
    return error_response("internal_error")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ToxicServiceError, _own_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
