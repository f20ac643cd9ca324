"""The OpenAPI 3.1 document, built from the same limits and codes the code enforces."""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from toxic_service import __version__
from toxic_service.api.validation import Limits
from toxic_service.errors import APP, ERRORS, ErrorCode

# The statuses each route's own code answers with (api/errors.py, routes.py); what the front and
# gunicorn add is in FRONT_STATUSES, listed on every route because a client can meet it on any.
ROUTE_STATUSES: dict[str, tuple[int, ...]] = {
    "/detect-toxic": (400, 401, 403, 405, 413, 415, 429, 500, 503),  # 401/403/429: TOXIC_API_KEYS_NATIVE
    "/livez": (405, 500),
    "/readyz": (405, 500, 503),
    "/metrics": (405, 500),
    "/openapi.json": (405, 500),
    "/": (405, 500),
    "/static/{filename}": (404, 405, 416, 500),
    # The Perspective routes' own errors are Google's shape (the `default` response); only the
    # front's and gunicorn's answers, which never reach the app, come in ours.
    "/v1alpha1/comments:analyze": (),
    "/v1alpha1/comments:suggestscore": (),
    "/$discovery/rest": (),
}
FRONT_STATUSES = tuple(sorted({e.status for e in ERRORS.values() if e.http and set(e.emitted_by) - {APP}}))

# Every answer from a loaded model names it (api/routes.py _model_header; bundle.model_identity).
MODEL_HEADER = {
    "X-Toxic-Model": {
        "description": "The model that answered: `<bundle id>; file=<model file>; sha256=<its sha256>` "
        "(absent while no model is loaded).",
        "schema": {"type": "string"},
    }
}
_ALLOW_HEADER = {"Allow": {"description": "The methods this route accepts.", "schema": {"type": "string"}}}
_RETRY_AFTER_HEADER = {
    "Retry-After": {"description": "Seconds to wait before trying again (nginx's rate limit).", "schema": {"type": "integer"}}
}


def _codes(route: str, status: int) -> list[ErrorCode]:
    """The codes a client of `route` can get with `status`: the app's where the route answers it, the front's always."""
    own = status in ROUTE_STATUSES[route]
    return [
        e
        for e in ERRORS.values()
        if e.status == status and e.http and ((own and APP in e.emitted_by) or set(e.emitted_by) - {APP})
    ]


def _error(route: str, status: int, limits: Limits) -> dict[str, Any]:
    codes = _codes(route, status)
    described = "; ".join(
        f"`{e.code}` ({', '.join(w for w in e.emitted_by)}): {e.message.format(limit=limits.max_body_bytes)}" for e in codes
    )
    body: dict[str, Any] = {
        "description": f"{HTTPStatus(status).phrase}. {described}.",
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Error"},
                        {"properties": {"error": {"properties": {"code": {"enum": [e.code for e in codes]}}}}},
                    ]
                }
            }
        },
    }
    headers = {**(_ALLOW_HEADER if status == 405 else {}), **(_RETRY_AFTER_HEADER if status == 429 else {})}
    if headers:
        body["headers"] = headers
    return body


def error_responses(route: str, limits: Limits) -> dict[str, Any]:
    """Every error status a client of `route` can see, with its codes, keyed by status as OpenAPI wants."""
    statuses = sorted(set(ROUTE_STATUSES[route]) | set(FRONT_STATUSES))
    return {str(status): _error(route, status, limits) for status in statuses}


PERSPECTIVE_SCHEMAS: dict[str, Any] = {
    "GoogleError": {
        "type": "object",
        "description": "Google's error shape, on every Perspective route (toxic_service.perspective.errors).",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "integer", "description": "The HTTP status"},
                    "message": {"type": "string"},
                    "status": {"type": "string", "description": "google.rpc.Code name, e.g. INVALID_ARGUMENT"},
                    "details": {"type": "array", "items": {"type": "object"}},
                },
                "required": ["code", "message", "status"],
            }
        },
        "required": ["error"],
    },
}


def _or_google(responses: dict[str, Any]) -> dict[str, Any]:
    """The front's statuses on a Perspective route: ours when nginx or gunicorn answers, Google's when the app does."""
    out = {}
    for status, response in responses.items():
        ours = response["content"]["application/json"]["schema"]
        either = {"anyOf": [ours, {"$ref": "#/components/schemas/GoogleError"}]}
        out[status] = {**response, "content": {"application/json": {"schema": either}}}
    return out


def perspective_paths(limits: Limits) -> dict[str, Any]:
    """The Perspective drop-in's routes (toxic_service.perspective); their schemas are in its discovery document."""

    def op(route: str, op_id: str, summary: str, *, body: bool) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "operationId": op_id,
            "summary": summary,
            "description": "Google's Perspective API (commentanalyzer v1alpha1), request and response as Google "
            "defined them: see the discovery document at /$discovery/rest?version=v1alpha1.",
            "responses": {
                "200": {"description": "As Perspective answers", "headers": MODEL_HEADER,
                        "content": {"application/json": {"schema": {"type": "object"}}}},
                **_or_google(error_responses(route, limits)),
                "default": {"description": "Google's error shape",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GoogleError"}}}},
            },
        }
        if body:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
        return operation

    routes = (
        ("/v1alpha1/comments:analyze", "post", "perspectiveAnalyze", "Perspective: score a comment"),
        ("/v1alpha1/comments:suggestscore", "post", "perspectiveSuggestScore", "Perspective: suggest a score (kept here)"),
        ("/$discovery/rest", "get", "perspectiveDiscovery", "Perspective: the discovery document"),
    )
    return {route: {method: op(route, op_id, summary, body=method == "post")} for route, method, op_id, summary in routes}


def build_openapi(limits: Limits, labels: Sequence[str] | None) -> dict[str, Any]:
    """The document; `labels` are the served bundle's (None when not known yet: any label name is then allowed)."""
    text = {
        "type": "string",
        "minLength": 1,
        "maxLength": limits.max_text_chars,
        "pattern": r"\S",
        "description": f"A comment; not blank, at most {limits.max_text_chars} characters.",
    }
    score = {"type": "number", "minimum": 0, "maximum": 1}
    scores: dict[str, Any] = {
        "type": "object",
        "description": "One score per label of the served model, from 0 (not) to 1 (certainly), in the model's label order.",
    }
    flag = {"type": "boolean"}
    flags: dict[str, Any] = {
        "type": "object",
        "description": "Per label of the served model: true when its score is at or over its threshold "
        "(TOXIC_THRESHOLD_<LABEL>; /readyz lists those in force), in the model's label order.",
    }
    threshold = {"type": "number", "minimum": 0, "maximum": 1}
    thresholds: dict[str, Any] = {
        "type": "object",
        "description": "The threshold in force per label: its TOXIC_THRESHOLD_<LABEL> setting, else the bundle's "
        "recommended one, else 0.5.",
    }
    if labels is None:
        scores["additionalProperties"] = score
        flags["additionalProperties"] = flag
        thresholds["additionalProperties"] = threshold
    else:
        scores.update(properties={label: score for label in labels}, required=list(labels), additionalProperties=False)
        flags.update(properties={label: flag for label in labels}, required=list(labels), additionalProperties=False)
        thresholds.update(
            properties={label: threshold for label in labels}, required=list(labels), additionalProperties=False
        )
    flagged = {"type": "boolean", "description": "True when any label is at or over its threshold (`flags`)."}
    status_ok = {
        "type": "object",
        "properties": {"status": {"type": "string"}},
        "required": ["status"],
    }
    ready = {
        "type": "object",
        "properties": {
            "status": {"type": "string", "const": "ready"},
            "labels": {"type": "array", "items": {"type": "string"}, "description": "The served model's labels, in order."},
            "thresholds": {"$ref": "#/components/schemas/Thresholds"},
        },
        "required": ["status", "labels", "thresholds"],
    }
    detect = {
        "summary": "Score one comment or a batch, one score per label of the served model",
        "description": (
            "Send exactly one of `sequence` (one text; answers `prediction`, `flagged` and `flags`) or `sequences` "
            f"(1 to {limits.max_batch} texts; answers `predictions`, `flagged` and `flags` as lists in the same "
            "order). A label is flagged when its score is at or over its threshold (`/readyz` lists them). "
            "The seed's `padding` field is accepted and ignored; other fields are refused. "
            f"Bodies larger than {limits.max_body_bytes} bytes (`x-max-body-bytes` of the request body) "
            "are refused with 413."
        ),
        "operationId": "detectToxic",
        "requestBody": {
            "required": True,
            # Machine-readable body limit (bytes): what the app enforces; the front is set to the same value.
            "x-max-body-bytes": limits.max_body_bytes,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DetectRequest"}}},
        },
        "responses": {
            "200": {
                "description": "Scores, the labels at or over their thresholds (`flagged`, `flags`), and the model "
                "that gave them (`model`, also the X-Toxic-Model header)",
                "headers": MODEL_HEADER,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DetectResponse"}}},
            },
            **error_responses("/detect-toxic", limits),
        },
    }

    def get_op(route: str, op_id: str, summary: str, ok: dict[str, Any], **extra: Any) -> dict[str, Any]:
        op = {"operationId": op_id, "summary": summary, **extra, "responses": {"200": ok, **error_responses(route, limits)}}
        return {"get": op}

    paths: dict[str, Any] = {
        "/detect-toxic": {"post": detect},
        "/livez": get_op(
            "/livez",
            "livez",
            "Liveness: the worker answers",
            {"description": "Alive", "content": {"application/json": {"schema": status_ok}}},
        ),
        "/readyz": get_op(
            "/readyz",
            "readyz",
            "Readiness: model and vocabulary loaded and the store answers; lists the served labels",
            {"description": "Ready", "content": {"application/json": {"schema": ready}}},
        ),
        "/metrics": get_op(
            "/metrics",
            "metrics",
            "Prometheus metrics, summed over all workers",
            {"description": "Prometheus text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}},
        ),
        "/openapi.json": get_op(
            "/openapi.json",
            "openapi",
            "This document",
            {"description": "OpenAPI 3.1 document", "content": {"application/json": {"schema": {"type": "object"}}}},
        ),
        "/": get_op(
            "/",
            "page",
            "A small page: type a comment, see the scores as bars",
            {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
        ),
        **perspective_paths(limits),
        "/static/{filename}": get_op(
            "/static/{filename}",
            "static",
            "The page's script and style sheet",
            {"description": "The file", "content": {"*/*": {"schema": {"type": "string"}}}},
            parameters=[
                {"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}, "example": "app.js"}
            ],
        ),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "toxic-service",
            "version": __version__,
            "description": (
                "Scores comments for the labels of the served model (`/readyz` lists them). "
                'Every error is JSON `{"error": {"code", "message"}}`, from the app, gunicorn or the nginx front '
                "alike; each response lists the codes it can carry. `x-max-body-bytes` on /detect-toxic's "
                "request body is the largest body accepted, in bytes."
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "paths": paths,
        "components": {
            "schemas": {
                "DetectRequest": {
                    "type": "object",
                    "properties": {
                        "sequence": text,
                        "sequences": {"type": "array", "items": text, "minItems": 1, "maxItems": limits.max_batch},
                        "padding": {"description": "Accepted for the seed's clients and ignored."},
                    },
                    "additionalProperties": False,
                    "oneOf": [{"required": ["sequence"]}, {"required": ["sequences"]}],
                },
                "Scores": scores,
                "Flags": flags,
                "Thresholds": thresholds,
                "DetectResponse": {
                    "oneOf": [
                        {
                            "type": "object",
                            "properties": {
                                "prediction": {"$ref": "#/components/schemas/Scores"},
                                "flagged": flagged,
                                "flags": {"$ref": "#/components/schemas/Flags"},
                                "model": {"$ref": "#/components/schemas/Model"},
                            },
                            "required": ["prediction", "flagged", "flags", "model"],
                            "additionalProperties": False,
                        },
                        {
                            "type": "object",
                            "properties": {
                                "predictions": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Scores"},
                                    "minItems": 1,
                                    "maxItems": limits.max_batch,
                                },
                                "flagged": {
                                    "type": "array",
                                    "items": flagged,
                                    "minItems": 1,
                                    "maxItems": limits.max_batch,
                                    "description": "`flagged` of each text, in the order of `predictions`.",
                                },
                                "flags": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Flags"},
                                    "minItems": 1,
                                    "maxItems": limits.max_batch,
                                    "description": "`flags` of each text, in the order of `predictions`.",
                                },
                                "model": {"$ref": "#/components/schemas/Model"},
                            },
                            "required": ["predictions", "flagged", "flags", "model"],
                            "additionalProperties": False,
                        },
                    ]
                },
                "Model": {
                    "type": "object",
                    "description": "The model that answered, so a result can be reproduced (bundle.model_identity).",
                    "properties": {
                        "bundle": {"type": "string", "description": "sha256 of the bundle's metadata (canonical JSON), "
                                   "first 16 hex digits: changes with the model, vocabulary, tokenizer or labels"},
                        "file": {"type": "string", "description": "The model file served (model.tflite or model.keras)"},
                        "sha256": {"type": "string", "description": "That file's sha256"},
                        "source": {"type": "string", "description": "Where the model came from (metadata.json)"},
                    },
                    "required": ["bundle", "file", "sha256", "source"],
                    "additionalProperties": False,
                },
                **PERSPECTIVE_SCHEMAS,
                "Error": {
                    "type": "object",
                    "description": "Every error body, whoever answers (app, gunicorn, nginx): toxic_service.errors.ERRORS.",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string", "enum": [e.code for e in ERRORS.values() if e.http]},
                                "message": {"type": "string", "minLength": 1},
                            },
                            "required": ["code", "message"],
                            "additionalProperties": False,
                        }
                    },
                    "required": ["error"],
                    "additionalProperties": False,
                },
            }
        },
    }
