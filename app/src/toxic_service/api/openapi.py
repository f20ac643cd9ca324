"""The OpenAPI 3.1 document, built from the same limits and codes the code enforces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from toxic_service import __version__
from toxic_service.api.errors import ERROR_CODES
from toxic_service.api.validation import Limits

_STATUS_TEXT = {
    400: "Bad request: body is not valid JSON, a field is missing, of the wrong type, empty, or unknown.",
    404: "No such route.",
    405: "Method not allowed on this route; the Allow header lists the allowed methods.",
    413: "Too large: body over the byte limit, a text over the character limit, or a batch over the item limit.",
    415: "The body is not JSON (Content-Type must be application/json, UTF-8).",
    500: "Internal error (details only in the service log).",
    503: "Not ready: the model or vocabulary is not loaded, or the vocabulary store does not answer.",
}


def _error(status: int, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"$ref": "#/components/schemas/Error"}
    codes = ERROR_CODES[status]
    body = {
        "description": _STATUS_TEXT[status],
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [
                        schema,
                        {"properties": {"error": {"properties": {"code": {"enum": list(codes)}}}}},
                    ]
                }
            }
        },
    }
    if headers:
        body["headers"] = headers
    return body


_ALLOW_HEADER = {"Allow": {"description": "The methods this route accepts.", "schema": {"type": "string"}}}


def _common_errors(*statuses: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status in statuses:
        out[str(status)] = _error(status, _ALLOW_HEADER if status == 405 else None)
    return out


def build_openapi(limits: Limits, labels: Sequence[str]) -> dict[str, Any]:
    text = {
        "type": "string",
        "minLength": 1,
        "maxLength": limits.max_text_chars,
        "pattern": r"\S",
        "description": f"A comment; not blank, at most {limits.max_text_chars} characters.",
    }
    scores = {
        "type": "object",
        "description": "One score per label, from 0 (not) to 1 (certainly), in the model's label order.",
        "properties": {label: {"type": "number", "minimum": 0, "maximum": 1} for label in labels},
        "required": list(labels),
        "additionalProperties": False,
    }
    status_ok = {
        "type": "object",
        "properties": {"status": {"type": "string"}},
        "required": ["status"],
    }
    get_errors = _common_errors(405, 500)
    detect = {
        "summary": "Score one comment or a batch for six kinds of toxicity",
        "description": (
            "Send exactly one of `sequence` (one text; answers `prediction`) or `sequences` "
            f"(1 to {limits.max_batch} texts; answers `predictions` in the same order). "
            "The seed's `padding` field is accepted and ignored; other fields are refused. "
            f"Bodies larger than {limits.max_body_bytes} bytes are refused with 413."
        ),
        "operationId": "detectToxic",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DetectRequest"}}},
        },
        "responses": {
            "200": {
                "description": "Scores",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DetectResponse"}}},
            },
            **_common_errors(400, 405, 413, 415, 500, 503),
        },
    }

    def get_op(op_id: str, summary: str, ok: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"get": {"operationId": op_id, "summary": summary, "responses": {"200": ok, **(extra or {}), **get_errors}}}

    paths: dict[str, Any] = {
        "/detect-toxic": {"post": detect},
        "/livez": get_op(
            "livez",
            "Liveness: the worker answers",
            {"description": "Alive", "content": {"application/json": {"schema": status_ok}}},
        ),
        "/readyz": get_op(
            "readyz",
            "Readiness: model and vocabulary loaded and the store answers",
            {"description": "Ready", "content": {"application/json": {"schema": status_ok}}},
            _common_errors(503),
        ),
        "/metrics": get_op(
            "metrics",
            "Prometheus metrics, summed over all workers",
            {"description": "Prometheus text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}},
        ),
        "/openapi.json": get_op(
            "openapi",
            "This document",
            {"description": "OpenAPI 3.1 document", "content": {"application/json": {"schema": {"type": "object"}}}},
        ),
        "/": get_op(
            "page",
            "A small page: type a comment, see the scores as bars",
            {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
        ),
        "/static/{filename}": {
            "get": {
                "operationId": "static",
                "summary": "The page's script and style sheet",
                "parameters": [
                    {"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}, "example": "app.js"}
                ],
                "responses": {
                    "200": {"description": "The file", "content": {"*/*": {"schema": {"type": "string"}}}},
                    **_common_errors(404, 405, 500),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "toxic-service",
            "version": __version__,
            "description": 'Scores comments for six kinds of toxicity. Every error is JSON `{"error": {"code", "message"}}`.',
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
                "DetectResponse": {
                    "oneOf": [
                        {
                            "type": "object",
                            "properties": {"prediction": {"$ref": "#/components/schemas/Scores"}},
                            "required": ["prediction"],
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
                                }
                            },
                            "required": ["predictions"],
                            "additionalProperties": False,
                        },
                    ]
                },
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                            "required": ["code", "message"],
                        }
                    },
                    "required": ["error"],
                },
            }
        },
    }
