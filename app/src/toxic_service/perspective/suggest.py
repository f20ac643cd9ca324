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
exclusive, 0 <= begin < end <= the text's length (of the original string,
markup included, for HTML); an attribute is one the served model maps.
Unknown fields are refused as Google's APIs refuse them; the proto's
snake_case names are accepted too. comment and context follow analyze.py's
rules (its readers are used, so both methods agree on a TextEntry).
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
from toxic_service.perspective.analyze import _bool, _context, _object, _string, _text_entry, _wrong
from toxic_service.perspective.attributes import AttributeMap
from toxic_service.perspective.errors import PerspectiveError, invalid_argument
from toxic_service.settings import Settings

log = logging.getLogger("toxic_service.api")

SCORE_TYPES = ("SCORE_TYPE_UNSPECIFIED", "PROBABILITY")
# lowerCamelCase -> the proto's snake_case (both accepted, as for analyze), per message.
_REQUEST_FIELDS = {
    "comment": "comment",
    "context": "context",
    "attributeScores": "attribute_scores",
    "languages": "languages",
    "communityId": "community_id",
    "clientToken": "client_token",
    "sessionId": "session_id",
    "doNotStore": "do_not_store",
}
_ATTRIBUTE_SCORES_FIELDS = {"summaryScore": "summary_score", "spanScores": "span_scores"}
_SPAN_FIELDS = {"begin": "begin", "end": "end", "score": "score"}
_SCORE_FIELDS = {"value": "value", "type": "type"}
# Free-form identifiers are stored: bounded so a client cannot fill the store through them.
MAX_ID_CHARS = 512


def _bad(field: str, message: str) -> PerspectiveError:
    return invalid_argument(f"'{field}' {message}", field=field)


def _probability(value: Any, field: str) -> float:
    score = _object(value, field, _SCORE_FIELDS)
    if "value" not in score:
        raise _bad(f"{field}.value", "is required (every score is set explicitly; use 0 or 1 for yes/no)")
    number = score["value"]
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise _wrong(f"{field}.value", "a number in [0, 1]", number)
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise _bad(f"{field}.value", f"must be a probability in [0, 1] (got {number})")
    score_type = score.get("type", "PROBABILITY")
    if score_type not in SCORE_TYPES:
        raise _bad(f"{field}.type", f"must be PROBABILITY (or unset), the one score type accepted (got {score_type!r})")
    return float(number)


def _offset(span: dict[str, Any], name: str, field: str) -> int:
    if name not in span:
        raise _bad(f"{field}.{name}", "is required: every span score has begin and end")
    value = span[name]
    # proto3 JSON writes int32 as a number; a decimal string is accepted as its JSON mapping allows.
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(f"{field}.{name}", "an integer", value)
    return value


def _spans(value: Any, field: str, text_units: int) -> tuple[SpanSuggestion, ...]:
    if not isinstance(value, list):
        raise _wrong(field, "an array of SpanScore objects", value)
    spans = []
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        span = _object(item, where, _SPAN_FIELDS)
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
    where = "attributeScores"
    if not isinstance(value, dict):
        raise _wrong(where, "an object {ATTRIBUTE: {summaryScore, spanScores}}", value)
    if not value:
        raise _bad(where, "is empty; suggest a score for at least one attribute")
    result = []
    for name, item in value.items():
        field = f"{where}.{name}"
        if name not in supported:
            raise invalid_argument(
                f"'{field}': attribute {name} is not served by this model; supported attributes: "
                f"{', '.join(supported) or 'none'}",
                field=field,
            )
        entry = _object(item, field, _ATTRIBUTE_SCORES_FIELDS)
        if "summaryScore" not in entry and not entry.get("spanScores"):
            raise _bad(field, "is empty; give a summaryScore or at least one spanScores entry")
        summary = _probability(entry["summaryScore"], f"{field}.summaryScore") if "summaryScore" in entry else None
        spans = _spans(entry.get("spanScores", []), f"{field}.spanScores", text_units)
        result.append(AttributeSuggestion(name, summary, spans))
    return tuple(result)


def _languages(value: Any, check_languages: Callable[[list[str]], None] | None) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _wrong("languages", "an array of language codes", value)
    languages = [_string(v, f"languages[{i}]") for i, v in enumerate(value)]
    if check_languages is not None:
        check_languages(languages)
    return tuple(languages)


def _identifier(doc: dict[str, Any], name: str) -> str | None:
    if name not in doc:
        return None
    value = _string(doc[name], name)
    if len(value) > MAX_ID_CHARS:
        raise _bad(name, f"has {len(value)} characters; the limit is {MAX_ID_CHARS}")
    return value


def parse_suggestion(
    body: Any,
    supported: Mapping[str, str],
    *,
    key_name: str | None = None,
    check_languages: Callable[[list[str]], None] | None = None,
) -> Suggestion:
    """The Suggestion to store from a request body, or the INVALID_ARGUMENT naming the first wrong field.

    `supported` maps the served model's attribute names to its labels; `check_languages`
    raises Perspective's error for languages the model does not serve. comment and context
    are read by analyze.py's readers: one set of rules for a TextEntry in both methods.
    """
    doc = _object(body, "", _REQUEST_FIELDS)
    if "comment" not in doc:
        raise _bad("comment", "is required: the comment the scores are for")
    text, html = _text_entry(doc["comment"], "comment", required=True)
    if "context" in doc:
        _context(doc["context"])
    languages = _languages(doc["languages"], check_languages) if "languages" in doc else ()
    ids = {name: _identifier(doc, name) for name in ("communityId", "clientToken", "sessionId")}
    do_not_store = _bool(doc["doNotStore"], "doNotStore") if "doNotStore" in doc else False
    if "attributeScores" not in doc:
        raise _bad("attributeScores", "is required; suggest a score for at least one attribute")
    units = len(text.encode("utf-16-le")) // 2
    attributes = _attribute_scores(doc["attributeScores"], supported, units)
    return Suggestion(
        text=None if do_not_store else text,
        text_type="HTML" if html else "PLAIN_TEXT",
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
                # The payload as analyze's (one shape for Perspective's errorType in both methods).
                error_payload={
                    "languageNotSupportedByAttributeError": {"requestedLanguages": list(languages), "attribute": attribute}
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
    # No detector here: with no languages given, detectedLanguages is the bundle's languages (what
    # the model assumes), as comments:analyze answers it (analyze.py; docs/perspective.md says so).
    return response_for(suggestion, [] if suggestion.languages else list(served.languages))
