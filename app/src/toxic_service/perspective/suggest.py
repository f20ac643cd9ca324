"""POST /v1alpha1/comments:suggestscore: validate a SuggestCommentScoreRequest, keep it in the feedback store.

Request (commentanalyzer v1alpha1): comment {text, type}, context (entries or
articleAndParentComment, never both), attributeScores {NAME: {summaryScore
{value, type}, spanScores [{begin, end, score {value, type}}]}}, languages,
communityId, clientToken, sessionId, and our doNotStore (drop the text, keep
the scores). Response: SuggestCommentScoreResponse {clientToken,
requestedLanguages, detectedLanguages}, empty fields left out as proto3 JSON
does.

Rules, each an INVALID_ARGUMENT naming the field (Google's own description of
the method): attributeScores must not be empty, nor any of its entries; every
score is set explicitly and is a probability in [0, 1] (type PROBABILITY or
unset: the other score types need a reference distribution we do not have);
every span has begin and end, in UTF-16 code units of the text, end
exclusive, 0 <= begin < end <= the text's length; an attribute is one the
served model learned. Unknown fields are refused as Google's APIs refuse them.
The store is written, and committed, before the 200 (feedback/store.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from toxic_service.bundle import BundleMetadata, load_metadata
from toxic_service.feedback import feedback_store
from toxic_service.feedback.store import (
    AttributeSuggestion,
    FeedbackStoreFull,
    FeedbackUnavailable,
    SpanSuggestion,
    Suggestion,
)
from toxic_service.perspective.attributes import AttributeMap
from toxic_service.perspective.errors import PerspectiveError, invalid_argument
from toxic_service.settings import Settings

log = logging.getLogger("toxic_service.api")

# Perspective's documented limit on comment.text: 20 KB of UTF-8.
MAX_TEXT_BYTES = 20_480
TEXT_TYPES = ("TEXT_TYPE_UNSPECIFIED", "PLAIN_TEXT", "HTML")
SCORE_TYPES = ("SCORE_TYPE_UNSPECIFIED", "PROBABILITY")
REQUEST_FIELDS = frozenset(
    {"comment", "context", "attributeScores", "languages", "communityId", "clientToken", "sessionId", "doNotStore"}
)
# Free-form identifiers are stored: bounded so a client cannot fill the store through them.
MAX_ID_CHARS = 512


def _type_name(value: Any) -> str:
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


def _bad(field: str, message: str) -> PerspectiveError:
    return invalid_argument(f"{field}: {message}", field=field)


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(field, f"must be an object, not {_type_name(value)}")
    return value


def _known_fields(doc: dict[str, Any], allowed: frozenset[str] | set[str], where: str) -> None:
    for name in doc:
        if name not in allowed:
            path = f"{where}.{name}" if where else name
            raise _bad(path, f"unknown field (Cannot find field); known here: {', '.join(sorted(allowed))}")


def _string(value: Any, field: str, *, limit: int | None = None) -> str:
    if not isinstance(value, str):
        raise _bad(field, f"must be a string, not {_type_name(value)}")
    if limit is not None and len(value) > limit:
        raise _bad(field, f"has {len(value)} characters; the limit is {limit}")
    return value


def _text_entry(value: Any, field: str, *, required: bool) -> tuple[str, str]:
    """(text, type) of a TextEntry; a required one (the comment) must hold some text."""
    entry = _object(value, field)
    _known_fields(entry, {"text", "type"}, field)
    if "text" not in entry:
        if required:
            raise _bad(f"{field}.text", "is required")
        text = ""
    else:
        text = _string(entry["text"], f"{field}.text")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise _bad(f"{field}.text", "holds an unpaired surrogate (\\ud800-\\udfff), which is not text") from None
    if required and not text.strip():
        raise _bad(f"{field}.text", "is empty; send the comment the scores are for")
    if size > MAX_TEXT_BYTES:
        raise _bad(f"{field}.text", f"is {size} bytes of UTF-8; the limit is {MAX_TEXT_BYTES}")
    text_type = entry.get("type", "TEXT_TYPE_UNSPECIFIED")
    if text_type not in TEXT_TYPES:
        raise _bad(f"{field}.type", f"must be one of {', '.join(TEXT_TYPES)} (got {text_type!r})")
    return text, text_type


def _context(value: Any) -> None:
    """Checked for shape only: a suggestion's context is not stored (nothing in training uses it)."""
    context = _object(value, "context")
    _known_fields(context, {"entries", "articleAndParentComment"}, "context")
    if "entries" in context and "articleAndParentComment" in context:
        raise _bad("context", "set only one of entries and articleAndParentComment")
    if "entries" in context:
        entries = context["entries"]
        if not isinstance(entries, list):
            raise _bad("context.entries", f"must be an array, not {_type_name(entries)}")
        for i, entry in enumerate(entries):
            _text_entry(entry, f"context.entries[{i}]", required=False)
    if "articleAndParentComment" in context:
        where = "context.articleAndParentComment"
        pair = _object(context["articleAndParentComment"], where)
        _known_fields(pair, {"article", "parentComment"}, where)
        for name in ("article", "parentComment"):
            if name in pair:
                _text_entry(pair[name], f"{where}.{name}", required=False)


def _probability(score: Any, field: str) -> float:
    score = _object(score, field)
    _known_fields(score, {"value", "type"}, field)
    if "value" not in score:
        raise _bad(f"{field}.value", "is required (every score is set explicitly; use 0 or 1 for yes/no)")
    value = score["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"{field}.value", f"must be a number, not {_type_name(value)}")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise _bad(f"{field}.value", f"must be a probability in [0, 1] (got {value})")
    score_type = score.get("type", "PROBABILITY")
    if score_type not in SCORE_TYPES:
        raise _bad(f"{field}.type", f"only PROBABILITY scores are accepted (got {score_type!r})")
    return float(value)


def _offset(span: dict[str, Any], name: str, field: str) -> int:
    if name not in span:
        raise _bad(f"{field}.{name}", "is required: every span score has begin and end")
    value = span[name]
    # proto3 JSON writes int32 as a number; a decimal string is accepted as the JSON mapping allows.
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{field}.{name}", f"must be an integer, not {_type_name(value)}")
    return value


def _spans(value: Any, field: str, text_units: int) -> tuple[SpanSuggestion, ...]:
    if not isinstance(value, list):
        raise _bad(field, f"must be an array, not {_type_name(value)}")
    spans = []
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        span = _object(item, where)
        _known_fields(span, {"begin", "end", "score"}, where)
        begin, end = _offset(span, "begin", where), _offset(span, "end", where)
        if not 0 <= begin < end <= text_units:
            raise _bad(
                where,
                f"span [{begin}, {end}) is outside the text: 0 <= begin < end <= {text_units} "
                "(UTF-16 code units, end exclusive)",
            )
        if "score" not in span:
            raise _bad(f"{where}.score", "is required")
        spans.append(SpanSuggestion(begin, end, _probability(span["score"], f"{where}.score")))
    return tuple(spans)


def _attribute_scores(value: Any, supported: Mapping[str, str], text_units: int) -> tuple[AttributeSuggestion, ...]:
    scores = _object(value, "attributeScores")
    if not scores:
        raise _bad("attributeScores", "is empty; suggest a score for at least one attribute")
    result = []
    for name, item in scores.items():
        field = f"attributeScores.{name}"
        if name not in supported:
            raise invalid_argument(
                f"{field}: attribute {name!r} is not served by this model; supported: {', '.join(supported)}",
                field=field,
            )
        entry = _object(item, field)
        _known_fields(entry, {"summaryScore", "spanScores"}, field)
        if "summaryScore" not in entry and not entry.get("spanScores"):
            raise _bad(field, "is empty; give a summaryScore or at least one spanScores entry")
        summary = _probability(entry["summaryScore"], f"{field}.summaryScore") if "summaryScore" in entry else None
        spans = _spans(entry.get("spanScores", []), f"{field}.spanScores", text_units)
        result.append(AttributeSuggestion(name, summary, spans))
    return tuple(result)


def _languages(value: Any, check_languages: Callable[[list[str]], None] | None) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _bad("languages", f"must be an array of strings, not {_type_name(value)}")
    languages = [_string(v, f"languages[{i}]", limit=64) for i, v in enumerate(value)]
    if check_languages is not None:
        check_languages(languages)
    return tuple(languages)


def parse_suggestion(
    body: Any,
    supported: Mapping[str, str],
    *,
    key_name: str | None = None,
    check_languages: Callable[[list[str]], None] | None = None,
) -> Suggestion:
    """The Suggestion to store from a request body, or the INVALID_ARGUMENT naming the first wrong field.

    `supported` maps the served model's attribute names to its labels; `check_languages`
    raises Perspective's error for languages the model does not serve.
    """
    doc = _object(body, "request")
    _known_fields(doc, REQUEST_FIELDS, "")
    if "comment" not in doc:
        raise _bad("comment", "is required")
    text, text_type = _text_entry(doc["comment"], "comment", required=True)
    if "context" in doc:
        _context(doc["context"])
    languages = _languages(doc["languages"], check_languages) if "languages" in doc else ()
    ids = {
        name: _string(doc[name], name, limit=MAX_ID_CHARS) if name in doc else None
        for name in ("communityId", "clientToken", "sessionId")
    }
    do_not_store = doc.get("doNotStore", False)
    if not isinstance(do_not_store, bool):
        raise _bad("doNotStore", f"must be true or false, not {_type_name(do_not_store)}")
    if "attributeScores" not in doc:
        raise _bad("attributeScores", "is required; suggest a score for at least one attribute")
    units = len(text.encode("utf-16-le")) // 2
    attributes = _attribute_scores(doc["attributeScores"], supported, units)
    return Suggestion(
        text=None if do_not_store else text,
        text_type=text_type,
        attributes=attributes,
        key_name=key_name,
        community_id=ids["communityId"],
        session_id=ids["sessionId"],
        client_token=ids["clientToken"],
        languages=languages,
    )


def store_suggestion(suggestion: Suggestion, settings: Settings) -> int:
    """Write it (committed before return); the store's failures as Google's errors, details in the log."""
    try:
        return feedback_store(settings).add(suggestion)
    except FeedbackStoreFull as exc:
        log.warning("feedback store full", extra={"event": "feedback", "outcome": "full", "detail": str(exc)})
        # RESOURCE_EXHAUSTED is google.rpc's code for "the file system is out of space"; no
        # Retry-After: retrying does not help until an operator exports and clears the store.
        raise PerspectiveError(
            "RESOURCE_EXHAUSTED", "the feedback store is full; nothing was stored (the operator must export and clear it)"
        ) from None
    except FeedbackUnavailable as exc:
        log.error("feedback store unavailable", extra={"event": "feedback", "outcome": "unavailable", "detail": str(exc)})
        raise PerspectiveError("UNAVAILABLE", "the feedback store cannot be written; nothing was stored") from None


def response_for(suggestion: Suggestion, detected: list[str] | None = None) -> dict[str, Any]:
    """SuggestCommentScoreResponse: empty fields left out, as proto3 JSON writes them."""
    doc: dict[str, Any] = {}
    if suggestion.client_token is not None:
        doc["clientToken"] = suggestion.client_token
    if suggestion.languages:
        doc["requestedLanguages"] = list(suggestion.languages)
    if detected:
        doc["detectedLanguages"] = list(detected)
    return doc


def _served_metadata(settings: Settings) -> BundleMetadata:
    """The served model's metadata: the worker's scorer's when it is built, else the bundle on disk
    (suggestions need the attribute map, not the vocabulary, so a store outage does not stop them)."""
    from flask import current_app, has_app_context

    holder = current_app.extensions.get("toxic_service.holder") if has_app_context() else None
    scorer = holder.scorer if holder is not None else None
    if scorer is not None:
        return scorer.metadata
    return load_metadata(settings.bundle_dir)


def language_checker(served: AttributeMap, attributes: Mapping[str, Any]) -> Callable[[list[str]], None]:
    """Perspective's LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE for languages the model does not serve."""

    def check(languages: list[str]) -> None:
        unsupported = served.unsupported_languages(languages)
        if unsupported:
            attribute = next(iter(attributes), "") if isinstance(attributes, Mapping) else ""
            raise invalid_argument(
                f"Attribute {attribute} does not support request languages: {', '.join(unsupported)} "
                f"(this model serves: {', '.join(served.languages)})",
                field="languages",
                error_type="LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE",
                error_payload={
                    "languageNotSupportedByAttributeError": {"detectedLanguages": unsupported, "attribute": attribute}
                },
            )

    return check


def suggest_score(body: dict[str, Any], key_name: str | None, settings: Settings | None = None) -> dict[str, Any]:
    """The blueprint's handler: validate, store (committed before this returns), answer.

    `settings` default: the app's. A request is validated completely before anything is written.
    """
    if settings is None:
        from flask import current_app

        settings = current_app.extensions["toxic_service.settings"]
    served = AttributeMap.from_metadata(_served_metadata(settings))
    scores = body.get("attributeScores") if isinstance(body, dict) else None
    suggestion = parse_suggestion(
        body,
        served.to_label,
        key_name=key_name,
        check_languages=language_checker(served, scores if isinstance(scores, dict) else {}),
    )
    store_suggestion(suggestion, settings)
    # detectedLanguages is left out: this service has no language detector, and naming the
    # bundle's language as "detected" would claim a detection that never happened.
    return response_for(suggestion)
