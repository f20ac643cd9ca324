"""Turns a /detect-toxic request body into a list of texts, or one clear error.

Pure functions of (content type, body bytes, limits): no Flask here, so every
rule is testable on its own and the OpenAPI document can quote the same limits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from toxic_service.errors import ERRORS, BadRequest, PayloadTooLarge, UnsupportedMediaType

# The seed's clients send {"sequence": ..., "padding": 100}; padding is ignored.
ALLOWED_FIELDS = frozenset({"sequence", "sequences", "padding"})


@dataclass(frozen=True)
class Limits:
    max_text_chars: int
    max_batch: int
    max_body_bytes: int


@dataclass(frozen=True)
class DetectRequest:
    texts: list[str]
    batch: bool  # True for {"sequences": [...]}, which answers {"predictions": [...]}


def check_content_type(content_type: str | None) -> None:
    """Only JSON is accepted; a charset parameter, if any, must be UTF-8."""
    if not content_type:
        raise UnsupportedMediaType(ERRORS["unsupported_media_type"].message)
    mime, _, params = content_type.partition(";")
    mime = mime.strip().lower()
    if mime != "application/json" and not (mime.startswith("application/") and mime.endswith("+json")):
        raise UnsupportedMediaType(f"content type '{mime}' is not supported; use 'application/json'")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"charset '{value.strip()}' is not supported; JSON bodies are UTF-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise ValueError(f"duplicate key '{key}'")
        doc[key] = value
    return doc


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity, no duplicate keys."""
    if not body.strip():
        raise BadRequest("the request body is empty; send a JSON object such as {\"sequence\": \"some text\"}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the request body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise BadRequest("the request body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError is a ValueError, as are our hooks' errors
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def _check_text(value: Any, where: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be a string, not {json_type(value)}")
    if not value.strip():
        raise BadRequest(f"{where} is empty; send some text to score")
    if len(value) > limits.max_text_chars:
        raise PayloadTooLarge(f"{where} has {len(value)} characters; the limit is {limits.max_text_chars}")
    try:
        # Lone surrogates survive json.loads but cannot be stored, looked up or logged.
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{where} holds an unpaired surrogate (\\ud800-\\udfff), which is not text") from None
    return value


def json_type(value: Any) -> str:
    """How an error message names a JSON value's type (both APIs' messages use it)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def parse_detect_request(content_type: str | None, body: bytes, limits: Limits) -> DetectRequest:
    """Validate a /detect-toxic request; raises BadRequest, PayloadTooLarge or UnsupportedMediaType."""
    check_content_type(content_type)
    if len(body) > limits.max_body_bytes:  # normally stopped earlier by MAX_CONTENT_LENGTH
        raise PayloadTooLarge(f"the request body has {len(body)} bytes; the limit is {limits.max_body_bytes}")
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise BadRequest(f"the request body must be a JSON object, not {json_type(doc)}")
    unknown = sorted(set(doc) - ALLOWED_FIELDS)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(repr(k) for k in unknown)}; send 'sequence' or 'sequences'")
    if ("sequence" in doc) == ("sequences" in doc):
        which = "both" if "sequence" in doc else "neither"
        raise BadRequest(f"send exactly one of 'sequence' (a string) or 'sequences' (an array of strings); got {which}")
    if "sequence" in doc:
        return DetectRequest([_check_text(doc["sequence"], "'sequence'", limits)], batch=False)
    items = doc["sequences"]
    if not isinstance(items, list):
        raise BadRequest(f"'sequences' must be an array of strings, not {json_type(items)}")
    if not items:
        raise BadRequest("'sequences' is empty; send at least one string")
    if len(items) > limits.max_batch:
        raise PayloadTooLarge(f"'sequences' has {len(items)} items; the limit is {limits.max_batch}")
    return DetectRequest([_check_text(v, f"'sequences[{i}]'", limits) for i, v in enumerate(items)], batch=True)
