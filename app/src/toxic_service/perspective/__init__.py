"""A drop-in for Google's Perspective API (commentanalyzer v1alpha1), as a Flask blueprint.

Routes: POST /v1alpha1/comments:analyze (analyze.py), POST
/v1alpha1/comments:suggestscore (suggest.py) and GET /$discovery/rest
(discovery.py). Every answer under these paths, errors included, is in
Google's shape (errors.py). Werkzeug's routing errors (an unknown path, a
wrong method) happen before any blueprint is chosen, so the app's HTTPException
handler is wrapped: under these prefixes a 404 or 405 is Google's error, the
native API's everywhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from toxic_service.errors import ERRORS, ToxicServiceError
from toxic_service.perspective.errors import PerspectiveError, json_response

log = logging.getLogger("toxic_service.api")

API_PREFIX = "/v1alpha1"
ANALYZE_PATH = f"{API_PREFIX}/comments:analyze"
SUGGEST_PATH = f"{API_PREFIX}/comments:suggestscore"
DISCOVERY_PATH = "/$discovery/rest"
# Paths that answer in Google's shape, whether or not a route matches.
OWN_PREFIXES = (f"{API_PREFIX}/", "/$discovery/")


def analyze_route() -> Response:
    # Not named `analyze`: importing the submodule perspective.analyze rebinds that package attribute
    # to the module, and the next create_app in the process would register a module as the view.
    from toxic_service.perspective.analyze import analyze_view

    return analyze_view()


def suggestscore() -> Response:
    from toxic_service.perspective.analyze import read_json_body
    from toxic_service.perspective.suggest import suggest_score

    # perspective_key_name: set by the key check (apikeys.gate.perspective_check, this blueprint's before_request).
    return json_response(suggest_score(read_json_body(), getattr(request, "perspective_key_name", None)))


def discovery_route() -> Response:
    # Not named `discovery`, for the reason analyze_route is not named `analyze`.
    from toxic_service.perspective.discovery import discovery_document

    return json_response(discovery_document(request))


def _routing_error(exc: HTTPException) -> Response:
    """Werkzeug's 404/405 under OWN_PREFIXES, in Google's shape (405 keeps its Allow header)."""
    if isinstance(exc, MethodNotAllowed):
        allow = ", ".join(sorted(exc.valid_methods or ()))
        return PerspectiveError(
            "UNIMPLEMENTED",
            f"HTTP method {request.method} is not allowed on {request.path}; allowed: {allow}",
            http=405,
            headers={"Allow": allow},
        ).response()
    if isinstance(exc, NotFound):
        return PerspectiveError("NOT_FOUND", f"no such method: {request.path}").response()
    return _http_error(exc)


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

    def add(rule: str, view: Callable[..., Response], endpoint: str, method: str) -> None:
        bp.add_url_rule(rule, endpoint, view, methods=[method], provide_automatic_options=False)

    add(ANALYZE_PATH, analyze_route, "perspective_analyze", "POST")
    add(SUGGEST_PATH, suggestscore, "perspective_suggestscore", "POST")
    add(DISCOVERY_PATH, discovery_route, "perspective_discovery", "GET")
    from toxic_service.apikeys.gate import perspective_check  # API keys and quotas (P3): analyze, suggestscore

    bp.before_request(perspective_check)
    bp.register_error_handler(PerspectiveError, _perspective_error)
    bp.register_error_handler(HTTPException, _http_error)
    bp.register_error_handler(ToxicServiceError, _own_error)
    bp.register_error_handler(Exception, _unexpected)
    app.register_blueprint(bp)
    # Call after api.errors.register_error_handlers: its HTTPException handler answers all other paths.
    native = app.error_handler_spec[None][None].get(HTTPException)

    def routing_error(exc: HTTPException) -> Any:
        if request.path.startswith(OWN_PREFIXES) or native is None:
            return _routing_error(exc)
        return native(exc)

    app.register_error_handler(HTTPException, routing_error)
