"""The Flask application: `create_app(settings)` builds everything a worker serves.

Nothing is loaded at import time: gunicorn workers import `toxic_service.api.wsgi`
after forking, and that calls create_app(), which loads the model and opens
the vocabulary in the worker itself.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from toxic_service.api import metrics
from toxic_service.api.errors import register_error_handlers
from toxic_service.api.routes import register_routes
from toxic_service.api.state import RETRY_INTERVAL_SECONDS, ScorerHolder
from toxic_service.api.validation import Limits
from toxic_service.logs import configure_logging
from toxic_service.perspective import register_perspective
from toxic_service.settings import Settings

log = logging.getLogger("toxic_service.api")

# JSON and metrics are data, never documents to render or frame.
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def create_app(settings: Settings | None = None, *, retry_interval: float = RETRY_INTERVAL_SECONDS) -> Flask:
    """Build the app and its scorer. Raises (BundleError, VocabularyMismatch, …) only when serving is impossible."""
    settings = settings or Settings()
    configure_logging()
    app = Flask("toxic_service", static_folder=None)
    # No redirect built from the client's Host header: Werkzeug answers `//` in a path with a 308 whose
    # Location is absolute, made from Host (`GET /static//x` with `Host: evil.example` ->
    # `Location: http://evil.example/static/x`). Off before any rule is added (each rule copies the
    # map's setting): such a path is the JSON 404. strict_slashes stays on: off, `/metrics/` would
    # serve /metrics past nginx's exact-path guard; on, it redirects only to add a slash to a rule
    # that ends in one, and no rule but `/` does.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # scores keep the model's label order
    app.json.compact = True
    app.extensions["toxic_service.settings"] = settings
    app.extensions["toxic_service.limits"] = Limits(
        max_text_chars=settings.max_text_chars, max_batch=settings.max_batch, max_body_bytes=settings.max_body_bytes
    )
    holder = ScorerHolder(settings, retry_interval=retry_interval)
    app.extensions["toxic_service.holder"] = holder
    register_routes(app)
    register_error_handlers(app)
    register_perspective(app)
    app.before_request(_start_timer)
    app.after_request(_finish)
    holder.start()
    return app


def _start_timer() -> None:
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    headers.setdefault("Content-Security-Policy", API_CSP)
    if request.endpoint not in ("page", "static"):
        headers.setdefault("Cache-Control", "no-store")
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    # Route templates, not raw paths, as labels: a scan of random URLs must not grow the metric set.
    route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    status = str(response.status_code)
    method = request.method if request.method in _KNOWN_METHODS else "OTHER"
    metrics.HTTP_REQUESTS.labels(route, method, status).inc()
    metrics.HTTP_LATENCY.labels(route, method, status).observe(seconds)
    fields = {
        "event": "request",
        "method": method,
        "route": route,
        "status": response.status_code,
        "ms": round(seconds * 1000, 2),
        "bytes_in": request.content_length,
    }
    if "batch_size" in g:
        fields["batch"] = g.batch_size
    if "texts" in g:  # only with settings.log_text
        fields["texts"] = g.texts
    log.info("request", extra=fields)
    return response


_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
