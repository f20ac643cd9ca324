"""POST /v1alpha1/comments:analyze: Perspective's AnalyzeCommentRequest in, AnalyzeCommentResponse out.

Parsing is pure (`parse_analyze_request(doc)`): every field's type is checked
and every refusal is INVALID_ARGUMENT naming the field (errors.py). Field names
are Perspective's lowerCamelCase; the proto's snake_case spelling
(`requested_attributes`) is accepted too, as Google's JSON parser accepts it.

Scoring uses the worker's scorer, the one /detect-toxic uses (api/state.py),
with ONE model call for the whole comment and all its spans (spans.py).

Languages: the bundle declares the languages it serves (metadata.json
`languages`, ["en"] for ours). A request naming another language gets
Perspective's LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE error (or, with
dropUnsupportedAttributes, an answer without the attributes). With no
`languages` given there is no language detector (none small enough for the
1 GB host's memory budget was found offline): `languages` and
`detectedLanguages` are then the bundle's languages, i.e. what the model
assumes, not what a detector measured.

System parameters (query string): key, alt=json, prettyPrint, fields,
quotaUser, $.xgafv, access_token, oauth_token, upload_protocol, uploadType
are accepted; `alt` other than json and a JSONP `callback` are refused.
`prettyPrint` (default true, as Google's APIs) indents the answer; `fields`
is accepted and the answer is not filtered (a full answer is a superset of
any partial one).

We never store an analyzed comment: `doNotStore`, `sessionId`,
`communityId` and `context` are checked and accepted, and change nothing here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Response, current_app, g, request

from toxic_service.api import metrics
from toxic_service.api.routes import _read_body
from toxic_service.api.validation import json_type, parse_json
from toxic_service.errors import BadRequest
from toxic_service.perspective.attributes import AttributeMap
from toxic_service.perspective.errors import PerspectiveError, invalid_argument, json_response
from toxic_service.perspective.spans import plain, score_with_spans, strip_html

# Perspective's limit on comment.text: 20 KB of UTF-8.
MAX_TEXT_BYTES = 20480
SCORE_TYPE = "PROBABILITY"
# The proto's default value means "not set", so a client that writes it out explicitly is accepted.
UNSET_SCORE_TYPES = frozenset({SCORE_TYPE, "SCORE_TYPE_UNSPECIFIED"})
TEXT_TYPES = {"PLAIN_TEXT": False, "HTML": True, "TEXT_TYPE_UNSPECIFIED": False}
SYSTEM_PARAMETERS = frozenset(
    {"key", "alt", "prettyPrint", "fields", "quotaUser", "$.xgafv", "access_token", "oauth_token",
     "upload_protocol", "uploadType"}
)  # fmt: skip

# lowerCamelCase -> the proto's snake_case, per message.
_REQUEST_FIELDS = {
    "comment": "comment",
    "context": "context",
    "requestedAttributes": "requested_attributes",
    "languages": "languages",
    "doNotStore": "do_not_store",
    "spanAnnotations": "span_annotations",
    "clientToken": "client_token",
    "sessionId": "session_id",
    "communityId": "community_id",
    "dropUnsupportedAttributes": "drop_unsupported_attributes",
}
_TEXT_ENTRY_FIELDS = {"text": "text", "type": "type"}
_CONTEXT_FIELDS = {"entries": "entries", "articleAndParentComment": "article_and_parent_comment"}
_ARTICLE_FIELDS = {"article": "article", "parentComment": "parent_comment"}
_ATTRIBUTE_FIELDS = {"scoreType": "score_type", "scoreThreshold": "score_threshold"}


@dataclass(frozen=True)
class AnalyzeRequest:
    text: str
    html: bool
    thresholds: dict[str, float | None]  # requested attribute -> scoreThreshold (None: every score)
    languages: list[str] = field(default_factory=list)
    span_annotations: bool = False
    drop_unsupported: bool = False
    client_token: str | None = None


def _wrong(where: str, expected: str, value: Any) -> PerspectiveError:
    return invalid_argument(f"Invalid value at '{where}': expected {expected}, got {json_type(value)}", field=where)


def _object(value: Any, where: str, allowed: Mapping[str, str]) -> dict[str, Any]:
    """`value` as a dict keyed by lowerCamelCase names; unknown or twice-given names refused."""
    if not isinstance(value, dict):
        raise _wrong(where or "(request body)", "an object", value)
    snake_to_camel = {snake: camel for camel, snake in allowed.items()}
    out: dict[str, Any] = {}
    for name, item in value.items():
        camel = name if name in allowed else snake_to_camel.get(name)
        if camel is None:
            at = f" at '{where}'" if where else ""
            raise invalid_argument(
                f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.',
                field=f"{where}.{name}" if where else name,
            )
        if camel in out:
            raise invalid_argument(f"'{where + '.' if where else ''}{camel}' is given twice (as {camel} and {name})",
                                   field=f"{where + '.' if where else ''}{camel}")
        out[camel] = item
    return out


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _wrong(where, "a string", value)
    try:
        value.encode("utf-8")  # a lone surrogate (\\ud800) survives json.loads but is not text
    except UnicodeEncodeError:
        raise invalid_argument(f"'{where}' holds an unpaired surrogate, which is not text", field=where) from None
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _wrong(where, "true or false", value)
    return value


def _text_entry(value: Any, where: str, *, required: bool) -> tuple[str, bool]:
    """A TextEntry {text, type}: (text, is_html). The comment's text must be non-blank and at most 20 KB."""
    entry = _object(value, where, _TEXT_ENTRY_FIELDS)
    if "text" not in entry:
        if required:
            raise invalid_argument(f"'{where}.text' is required: the text to analyze", field=f"{where}.text")
        text = ""
    else:
        text = _string(entry["text"], f"{where}.text")
    kind = entry.get("type", "PLAIN_TEXT")
    if not isinstance(kind, str):
        raise _wrong(f"{where}.type", "PLAIN_TEXT or HTML", kind)
    if kind not in TEXT_TYPES:
        raise invalid_argument(f"Invalid value at '{where}.type': {kind!r}; use PLAIN_TEXT or HTML",
                               field=f"{where}.type")
    size = len(text.encode("utf-8"))
    if size > MAX_TEXT_BYTES:
        raise invalid_argument(
            f"'{where}.text' is {size} bytes of UTF-8; the limit is {MAX_TEXT_BYTES} bytes (20 KB)",
            field=f"{where}.text",
        )
    if required and not text.strip():
        raise invalid_argument(f"'{where}.text' is empty or only whitespace; send the text to analyze",
                               field=f"{where}.text")
    return text, TEXT_TYPES[kind]


def _context(value: Any) -> None:
    """Checked and then ignored, as Perspective did: `entries` or `articleAndParentComment`, not both."""
    ctx = _object(value, "context", _CONTEXT_FIELDS)
    if "entries" in ctx and "articleAndParentComment" in ctx:
        raise invalid_argument(
            "'context' may hold 'entries' or 'articleAndParentComment', not both", field="context"
        )
    if "entries" in ctx:
        entries = ctx["entries"]
        if not isinstance(entries, list):
            raise _wrong("context.entries", "an array of TextEntry objects", entries)
        for i, entry in enumerate(entries):
            _text_entry(entry, f"context.entries[{i}]", required=False)
    if "articleAndParentComment" in ctx:
        pair = _object(ctx["articleAndParentComment"], "context.articleAndParentComment", _ARTICLE_FIELDS)
        for name in ("article", "parentComment"):
            if name in pair:
                _text_entry(pair[name], f"context.articleAndParentComment.{name}", required=False)


def _attributes(value: Any) -> dict[str, float | None]:
    where = "requestedAttributes"
    if not isinstance(value, dict):
        raise _wrong(where, "an object {ATTRIBUTE: {}}", value)
    if not value:
        raise invalid_argument(f"'{where}' is empty; request at least one attribute, e.g. {{\"TOXICITY\": {{}}}}",
                               field=where)
    thresholds: dict[str, float | None] = {}
    for name, params in value.items():
        at = f"{where}.{name}"
        spec = _object({} if params is None else params, at, _ATTRIBUTE_FIELDS)
        score_type = spec.get("scoreType")
        if score_type is not None:
            if not isinstance(score_type, str):
                raise _wrong(f"{at}.scoreType", "a string", score_type)
            if score_type not in UNSET_SCORE_TYPES:
                raise invalid_argument(
                    f"Invalid value at '{at}.scoreType': {score_type!r}; only {SCORE_TYPE} is supported",
                    field=f"{at}.scoreType",
                )
        threshold = spec.get("scoreThreshold")
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
                raise _wrong(f"{at}.scoreThreshold", "a number between 0 and 1", threshold)
            if not 0.0 <= threshold <= 1.0:
                raise invalid_argument(
                    f"Invalid value at '{at}.scoreThreshold': {threshold}; it must be between 0 and 1",
                    field=f"{at}.scoreThreshold",
                )
            threshold = float(threshold)
        thresholds[name] = threshold
    return thresholds


def parse_analyze_request(doc: Any) -> AnalyzeRequest:
    """Validate an AnalyzeCommentRequest (a parsed JSON body); raises PerspectiveError naming the field."""
    body = _object(doc, "", _REQUEST_FIELDS)
    if "comment" not in body:
        raise invalid_argument("'comment' is required: {\"comment\": {\"text\": \"...\"}}", field="comment")
    text, html = _text_entry(body["comment"], "comment", required=True)
    if "requestedAttributes" not in body:
        raise invalid_argument("'requestedAttributes' is required, e.g. {\"TOXICITY\": {}}",
                               field="requestedAttributes")
    thresholds = _attributes(body["requestedAttributes"])
    if body.get("context") is not None:
        _context(body["context"])
    languages = body.get("languages") or []
    if not isinstance(languages, list):
        raise _wrong("languages", "an array of language codes", languages)
    for i, code in enumerate(languages):
        if not isinstance(code, str) or not code.strip():
            raise invalid_argument(f"Invalid value at 'languages[{i}]': expected a language code such as \"en\"",
                                   field=f"languages[{i}]")
    flags = {}
    for name in ("doNotStore", "spanAnnotations", "dropUnsupportedAttributes"):
        flags[name] = _bool(body[name], name) if body.get(name) is not None else False
    tokens = {}
    for name in ("clientToken", "sessionId", "communityId"):
        tokens[name] = _string(body[name], name) if body.get(name) is not None else None
    return AnalyzeRequest(
        text=text,
        html=html,
        thresholds=thresholds,
        languages=[code.strip() for code in languages],
        span_annotations=flags["spanAnnotations"],
        drop_unsupported=flags["dropUnsupportedAttributes"],
        client_token=tokens["clientToken"],
    )


def check_system_parameters(args: Mapping[str, Any]) -> None:
    """Google's system parameters in the query string: accepted, except a non-JSON `alt` and JSONP."""
    for name in args:
        if name == "callback":
            raise invalid_argument("JSONP ('callback') is not supported; call the API with a JSON body",
                                   field="callback")
        if name not in SYSTEM_PARAMETERS:
            raise invalid_argument(
                f"Invalid JSON payload received. Unknown name \"{name}\": Cannot bind query parameter.", field=name
            )
    alt = args.get("alt", "json")
    if alt != "json":
        raise invalid_argument(f"alt={alt!r} is not supported; only alt=json", field="alt")
    pretty = args.get("prettyPrint", "true").lower()
    if pretty not in ("true", "false", "1", "0"):
        raise invalid_argument(f"Invalid value for prettyPrint: {pretty!r}; use true or false", field="prettyPrint")
    xgafv = args.get("$.xgafv", "1")
    if xgafv not in ("1", "2"):
        raise invalid_argument(f"Invalid value for $.xgafv: {xgafv!r}; use 1 or 2", field="$.xgafv")


def read_json_body() -> dict[str, Any]:
    """The request body as a JSON object, or INVALID_ARGUMENT (400) / 413 naming what is wrong.

    Shared by every POST method of the blueprint (suggestscore too). A Content-Type,
    when given, must be JSON (Google's client libraries always send application/json).
    """
    content_type = request.headers.get("Content-Type")
    if content_type:
        mime = content_type.partition(";")[0].strip().lower()
        if mime != "application/json" and not (mime.startswith("application/") and mime.endswith("+json")):
            raise invalid_argument(
                f"Content-Type '{mime}' is not supported; send the body as application/json", http=415
            )
    body = _read_body(current_app.config["MAX_CONTENT_LENGTH"])
    try:
        doc = parse_json(body)
    except BadRequest as exc:
        raise invalid_argument(str(exc).replace('{"sequence": "some text"}', "an AnalyzeCommentRequest")) from None
    if not isinstance(doc, dict):
        raise invalid_argument(f"Invalid JSON payload received: expected an object, got {json_type(doc)}")
    return doc


def _unsupported_language(req: AnalyzeRequest, attrs: AttributeMap, served: list[tuple[str, str]]) -> None:
    missing = attrs.unsupported_languages(req.languages)
    if not missing or not served:
        return
    attribute = served[0][0]
    raise invalid_argument(
        f"Attribute {attribute} does not support request languages: {', '.join(missing)} "
        f"(the served model supports {', '.join(attrs.languages)})",
        field="languages",
        error_type="LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE",
        error_payload={
            "languageNotSupportedByAttributeError": {"requestedLanguages": list(req.languages), "attribute": attribute}
        },
    )


def _score_value(value: float) -> dict[str, Any]:
    return {"value": value, "type": SCORE_TYPE}


def build_response(req: AnalyzeRequest, attrs: AttributeMap, served: list[tuple[str, str]], scored: Any) -> dict:
    """The AnalyzeCommentResponse for scores `scored` (spans.Scored, None when no attribute is served)."""
    scores: dict[str, Any] = {}
    for name, label in served:
        threshold = req.thresholds[name] or 0.0
        summary = scored.summary[label]
        if summary < threshold:
            continue  # Perspective omits an attribute scored below its threshold
        entry: dict[str, Any] = {}
        if req.span_annotations:
            entry["spanScores"] = [
                {"begin": begin, "end": end, "score": _score_value(row[label])}
                for begin, end, row in scored.spans
                if row[label] >= threshold
            ]
        entry["summaryScore"] = _score_value(summary)
        scores[name] = entry
    out: dict[str, Any] = {"attributeScores": scores, "languages": list(req.languages or attrs.languages)}
    if not req.languages:
        out["detectedLanguages"] = list(attrs.languages)  # no detector: the bundle's languages (see module doc)
    if req.client_token is not None:
        out["clientToken"] = req.client_token
    return out


def _check_scores(rows: list[dict[str, float]], expected: int) -> list[dict[str, float]]:
    if len(rows) != expected or not all(isinstance(v, float) and math.isfinite(v) for r in rows for v in r.values()):
        # A broken model must not reach clients as NaN (invalid JSON) or a short list.
        raise PerspectiveError("INTERNAL", "the model returned scores that are not finite numbers")
    return rows


def analyze_view() -> Response:
    check_system_parameters(request.args)
    req = parse_analyze_request(read_json_body())
    holder = current_app.extensions["toxic_service.holder"]
    scorer = holder.get()
    attrs = AttributeMap.from_metadata(scorer.metadata)
    served = attrs.resolve(req.thresholds, req.drop_unsupported)
    if req.languages and attrs.unsupported_languages(req.languages):
        if req.drop_unsupported:
            served = []  # every attribute is the bundle's, so none supports the request's languages
        else:
            _unsupported_language(req, attrs, served or [(next(iter(req.thresholds)), "")])
    if current_app.extensions["toxic_service.settings"].log_text:
        g.texts = [req.text]
    scored = None
    if served:
        prepared = strip_html(req.text) if req.html else plain(req.text)

        def score(texts: list[str]) -> list[dict[str, float]]:
            started = time.perf_counter()
            rows = scorer.score(texts)
            metrics.INFERENCE_LATENCY.observe(time.perf_counter() - started)
            metrics.BATCH_SIZE.observe(len(texts))
            g.batch_size = len(texts)
            return _check_scores(rows, len(texts))

        if not prepared.text.strip():
            raise invalid_argument("'comment.text' has no text outside its HTML markup", field="comment.text")
        limit = current_app.extensions["toxic_service.limits"].max_batch
        scored = score_with_spans(prepared, score, spans=req.span_annotations, max_spans=max(1, limit - 1))
    return json_response(build_response(req, attrs, served, scored))
