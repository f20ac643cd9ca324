"""A drop-in for Google's Perspective API (commentanalyzer v1alpha1), as a Flask blueprint.

Routes: POST /v1alpha1/comments:analyze (analyze.py), POST
/v1alpha1/comments:suggestscore (suggest.py) and GET /$discovery/rest
(discovery.py). Every answer under these paths, errors included, is in
Google's shape (errors.py): the blueprint owns its paths entirely, with a
catch-all route for unknown ones and every method routed to its views, so a
404 or 405 here is Google's error and not the native API's.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from toxic_service.errors import ERRORS, ToxicServiceError
from toxic_service.perspective.errors import PerspectiveError, json_response

log = logging.getLogger("toxic_service.api")

API_PREFIX = "/v1alpha1"
ANALYZE_PATH = f"{API_PREFIX}/comments:analyze"
SUGGEST_PATH = f"{API_PREFIX}/comments:suggestscore"
DISCOVERY_PATH = "/$discovery/rest"
# Every method a client might send: views answer 405 themselves (Werkzeug's routing 405
# happens before a blueprint is known, so its handlers could not shape it).
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _optional(module: str, name: str) -> Callable[..., Any] | None:
    """A handler from a sibling module that another helper may not have written yet (None until then)."""
    try:
        return getattr(importlib.import_module(f"toxic_service.perspective.{module}"), name)
    except ModuleNotFoundError as exc:
        if exc.name != f"toxic_service.perspective.{module}":
            raise
        return None


def _allow(methods: str) -> None:
    if request.method not in methods.split(", ") and not (request.method == "HEAD" and "GET" in methods):
        raise PerspectiveError(
            "UNIMPLEMENTED",
            f"HTTP method {request.method} is not allowed on {request.path}; allowed: {methods}",
            http=405,
            headers={"Allow": methods},
        )


def analyze() -> Response:
    _allow("POST")
    from toxic_service.perspective.analyze import analyze_view

    return analyze_view()


def suggestscore() -> Response:
    _allow("POST")
    from toxic_service.perspective.analyze import read_json_body

    handler = _optional("suggest", "suggest_score")
    if handler is None:
        raise PerspectiveError("UNIMPLEMENTED", "comments:suggestscore is not implemented yet")
    body = read_json_body()
    key_name = getattr(request, "perspective_key_name", None)
    return json_response(handler(body, key_name))


def discovery() -> Response:
    _allow("GET")
    handler = _optional("discovery", "discovery_document")
    if handler is None:
        raise PerspectiveError("UNIMPLEMENTED", "the discovery document is not implemented yet")
    return json_response(handler(request))


def unknown_path(rest: str = "") -> Response:
    raise PerspectiveError("NOT_FOUND", f"no such method: {request.path}")


def _perspective_error(exc: PerspectiveError) -> Response:
    return exc.response()


def _http_error(exc: HTTPException) -> Response:
    if isinstance(exc, RequestEntityTooLarge):
        from flask import current_app

        limit = current_app.config["MAX_CONTENT_LENGTH"]
        return PerspectiveError(
            "INVALID_ARGUMENT", f"the request body is larger than the limit of {limit} bytes", http=413
        ).response()
    if (exc.code or 500) >= 500:
        return _unexpected(exc)
    return PerspectiveError("INVALID_ARGUMENT", exc.description or exc.name, http=exc.code).response()


def _own_error(exc: ToxicServiceError) -> Response:
    """The native app's errors raised under these paths (store down, not ready, body too large)."""
    if exc.status == 413:
        return PerspectiveError("INVALID_ARGUMENT", str(exc), http=413).response()
    if exc.status == 503:
        # The table's message: a store outage's details (host:port, paths) stay in the log.
        log.warning("request failed", extra={"event": "error", "code": exc.code, "detail": str(exc)})
        return PerspectiveError("UNAVAILABLE", ERRORS[exc.code].message).response()
    if exc.status < 500:
        return PerspectiveError("INVALID_ARGUMENT", str(exc), http=exc.status).response()
    return _unexpected(exc)


def _unexpected(exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc, extra={"event": "error", "code": "internal_error"})
    return PerspectiveError("INTERNAL", ERRORS["internal_error"].message).response()


def register_perspective(app: Flask) -> None:
    """Add the Perspective routes and their Google-shaped error handlers to `app`."""
    bp = Blueprint("perspective", __name__)

    def add(rule: str, view: Callable[..., Response], endpoint: str) -> None:
        bp.add_url_rule(rule, endpoint, view, methods=_ALL_METHODS, provide_automatic_options=False)

    add(ANALYZE_PATH, analyze, "perspective_analyze")
    add(SUGGEST_PATH, suggestscore, "perspective_suggestscore")
    add(DISCOVERY_PATH, discovery, "perspective_discovery")
    add(f"{API_PREFIX}/<path:rest>", unknown_path, "perspective_unknown")
    add("/$discovery/<path:rest>", unknown_path, "perspective_unknown_discovery")
    bp.register_error_handler(PerspectiveError, _perspective_error)
    bp.register_error_handler(HTTPException, _http_error)
    bp.register_error_handler(ToxicServiceError, _own_error)
    bp.register_error_handler(Exception, _unexpected)
    app.register_blueprint(bp)
