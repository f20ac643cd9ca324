"""The HTTP routes. Parsing lives in validation.py, error responses in errors.py."""

from __future__ import annotations

import math
import time
from importlib import resources
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request, send_from_directory

from toxic_service.api import metrics
from toxic_service.api.openapi import build_openapi
from toxic_service.api.state import ScorerHolder
from toxic_service.api.validation import Limits, check_content_type, parse_detect_request
from toxic_service.apikeys.gate import authorize
from toxic_service.bundle import load_metadata, model_identity
from toxic_service.errors import ERRORS, BundleError, PayloadTooLarge, ToxicServiceError
from toxic_service.settings import Settings

STATIC_DIR = str(resources.files("toxic_service") / "static")


def _holder() -> ScorerHolder:
    return current_app.extensions["toxic_service.holder"]


def _limits() -> Limits:
    return current_app.extensions["toxic_service.limits"]


def _read_body(limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes however it is sent.

    A Content-Length over the limit is refused by Werkzeug (MAX_CONTENT_LENGTH)
    before anything is read; a chunked body has no length, and Werkzeug only
    cuts it off at the limit, which would turn a too-large body into a
    truncated one (a misleading 400): read one byte more than allowed to tell.
    """
    stream = request.stream
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(65536, limit + 1 - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    if size > limit:
        raise PayloadTooLarge(ERRORS["payload_too_large"].message.format(limit=limit))
    return b"".join(parts)


def detect_toxic() -> Response:
    settings = current_app.extensions["toxic_service.settings"]
    if settings.api_keys_native:
        authorize(request, settings, native=True)  # before the body is read or parsed
    limits = _limits()
    # The content type is checked before the body is read: a 415 never waits for a large upload.
    check_content_type(request.headers.get("Content-Type"))
    body = _read_body(limits.max_body_bytes)
    req = parse_detect_request(request.headers.get("Content-Type"), body, limits)
    g.batch_size = len(req.texts)
    if current_app.extensions["toxic_service.settings"].log_text:
        g.texts = req.texts
    scorer = _holder().get()
    started = time.perf_counter()
    scores = scorer.score(req.texts)
    metrics.INFERENCE_LATENCY.observe(time.perf_counter() - started)
    metrics.BATCH_SIZE.observe(len(req.texts))
    if len(scores) != len(req.texts) or not all(
        isinstance(v, float) and math.isfinite(v) for row in scores for v in row.values()
    ):
        # A broken model must not reach clients as NaN (invalid JSON) or a short list.
        raise ToxicServiceError("the model returned scores that are not finite numbers, or the wrong number of rows")
    thresholds = served_thresholds(scorer)
    # Additive: the seed's fields (prediction/predictions) stay as they were; flags are beside them, not in them.
    flags = [{label: row[label] >= threshold for label, threshold in thresholds.items()} for row in scores]
    flagged = [any(row.values()) for row in flags]
    body_out: dict[str, Any] = (
        {"predictions": scores, "flagged": flagged, "flags": flags}
        if req.batch
        else {"prediction": scores[0], "flagged": flagged[0], "flags": flags[0]}
    )
    body_out["model"] = served_model(scorer)
    return jsonify(body_out)


MODEL_HEADER = "X-Toxic-Model"


def served_model(scorer: Any) -> dict[str, str]:
    """model_identity of `scorer`'s bundle and model file, computed once per scorer."""
    cache = current_app.extensions.setdefault("toxic_service.model_identity", {})
    found = cache.get(id(scorer))
    if found is None or found[0] is not scorer:
        from toxic_service.runtime.factory import model_file_name

        file_name = model_file_name(current_app.extensions["toxic_service.settings"])
        found = cache[id(scorer)] = (scorer, model_identity(scorer.metadata, file_name))
    return found[1]


def served_thresholds(scorer: Any) -> dict[str, float]:
    """The thresholds in force for `scorer`'s labels (settings.thresholds_for), computed once per scorer."""
    cache = current_app.extensions.setdefault("toxic_service.thresholds", {})
    found = cache.get(id(scorer))
    if found is None or found[0] is not scorer:
        meta = scorer.metadata
        settings = current_app.extensions["toxic_service.settings"]
        found = cache[id(scorer)] = (scorer, settings.thresholds_for(meta.labels, meta.thresholds))
    return found[1]


def check_thresholds(settings: Settings) -> None:
    """Refuse to start (InvalidSettings naming the variable) on a threshold for a label the bundle lacks.

    Checked against the bundle's metadata.json, not the scorer: a worker whose vocabulary store is
    down still starts (503 until it answers), and a wrong threshold must stop it all the same. An
    unreadable bundle is left to the scorer's build, which reports it.
    """
    try:
        meta = load_metadata(settings.bundle_dir)
    except BundleError:
        return
    settings.thresholds_for(meta.labels, meta.thresholds)


def _model_header(response: Response) -> Response:
    """Every answer names the model that is serving (none while no model is loaded: nothing answered from one)."""
    scorer = _holder().scorer
    if scorer is not None:
        model = served_model(scorer)
        response.headers[MODEL_HEADER] = f"{model['bundle']}; file={model['file']}; sha256={model['sha256']}"
    return response


def livez() -> Response:
    return jsonify({"status": "alive"})


def readyz() -> Response:
    scorer = _holder().get()
    scorer.check_ready()
    # The thresholds in force are shown here, beside the labels, rather than in every /detect-toxic answer:
    # they are the deployment's settings, the same for every answer, and /readyz already declares what is served.
    return jsonify({"status": "ready", "labels": list(scorer.labels), "thresholds": served_thresholds(scorer)})


def metrics_view() -> Response:
    data, content_type = metrics.render()
    return Response(data, content_type=content_type)


def openapi() -> Response:
    return jsonify(build_openapi(_limits(), _labels()))


def _labels() -> tuple[str, ...] | None:
    """The served bundle's labels: the scorer's, else its metadata.json's (store down), else None (unknown)."""
    scorer = _holder().scorer
    if scorer is not None:
        return tuple(scorer.labels)
    try:
        return load_metadata(current_app.extensions["toxic_service.settings"].bundle_dir).labels
    except BundleError:
        return None


def page() -> Response:
    response = send_from_directory(STATIC_DIR, "index.html")
    response.headers["Content-Security-Policy"] = PAGE_CSP
    return response


def static_file(filename: str) -> Response:
    return send_from_directory(STATIC_DIR, filename)


PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def register_routes(app: Flask) -> None:
    # No automatic OPTIONS answers: every route answers exactly the methods the OpenAPI document lists.
    def add(rule: str, view: Any, methods: list[str], endpoint: str | None = None) -> None:
        app.add_url_rule(rule, endpoint or view.__name__, view, methods=methods, provide_automatic_options=False)

    check_thresholds(app.extensions["toxic_service.settings"])
    app.after_request(_model_header)
    add("/detect-toxic", detect_toxic, ["POST"])
    add("/livez", livez, ["GET"])
    add("/readyz", readyz, ["GET"])
    add("/metrics", metrics_view, ["GET"], endpoint="metrics")
    add("/openapi.json", openapi, ["GET"])
    add("/", page, ["GET"])
    add("/static/<path:filename>", static_file, ["GET"], endpoint="static")
