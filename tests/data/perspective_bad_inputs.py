"""Bad comments:analyze requests of every kind, as data: what to send and Google's error expected back.

Used by tests/unit/test_perspective_analyze.py (Flask test client). Each case
must leave the service unchanged and answering: callers check that after it.

`cases(max_body_bytes)` takes the body limit in force so the oversize body is
just over it. `field` is the request field the error must name (in its message
and, for INVALID_ARGUMENT on a field, in a google.rpc.BadRequest fieldViolation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

JSON = {"Content-Type": "application/json"}
PATH = "/v1alpha1/comments:analyze"


@dataclass(frozen=True)
class BadAnalyze:
    name: str
    body: bytes | None
    http: int
    status: str
    field: str  # named in the message ("" when the error is not about one field)
    query: str = ""
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    method: str = "POST"
    path: str = PATH
    error_type: str = ""  # Perspective's errorType in details
    violation: bool = True  # a fieldViolation naming `field` is expected
    named: str = ""  # what the message must contain when it is not `field` itself (Google's own wording)

    @property
    def in_message(self) -> str:
        return self.named or self.field


def _req(**overrides: object) -> dict:
    doc: dict = {"comment": {"text": "you idiot"}, "requestedAttributes": {"TOXICITY": {}}}
    doc.update(overrides)
    return doc


def _j(doc: object) -> bytes:
    return json.dumps(doc).encode()


def _attr(**params: object) -> bytes:
    return _j(_req(requestedAttributes={"TOXICITY": params}))


def cases(max_body_bytes: int) -> list[BadAnalyze]:
    bad = "INVALID_ARGUMENT"
    big = b'{"comment": {"text": "' + b"x" * max_body_bytes + b'"}, "requestedAttributes": {"TOXICITY": {}}}'
    return [
        # The body itself
        BadAnalyze("malformed JSON", b'{"comment": ', 400, bad, "JSON", violation=False),
        BadAnalyze("empty body", b"", 400, bad, "empty", violation=False),
        BadAnalyze("body is an array", b"[]", 400, bad, "object", violation=False),
        BadAnalyze("body not UTF-8", b'{"comment": {"text": "\xff"}}', 400, bad, "UTF-8", violation=False),
        BadAnalyze("NaN in JSON", b'{"comment": {"text": "hi"}, "requestedAttributes": {"TOXICITY": '
                   b'{"scoreThreshold": NaN}}}', 400, bad, "NaN", violation=False),
        BadAnalyze("duplicate key", b'{"comment": {"text": "a"}, "comment": {"text": "b"}}', 400, bad, "comment",
                   violation=False),
        BadAnalyze("body over the limit", big, 413, bad, str(max_body_bytes), violation=False),
        BadAnalyze("text/plain body", b"you idiot", 415, bad, "Content-Type", headers={"Content-Type": "text/plain"},
                   violation=False),
        BadAnalyze("unknown top-level field", _j(_req(flavour="spicy")), 400, bad, "flavour",
                   named='unknown name "flavour"'),
        # comment
        BadAnalyze("no comment", _j({"requestedAttributes": {"TOXICITY": {}}}), 400, bad, "comment"),
        BadAnalyze("comment is a string", _j(_req(comment="you idiot")), 400, bad, "comment"),
        BadAnalyze("comment without text", _j(_req(comment={"type": "PLAIN_TEXT"})), 400, bad, "comment.text"),
        BadAnalyze("comment.text a number", _j(_req(comment={"text": 5})), 400, bad, "comment.text"),
        BadAnalyze("comment.text null", _j(_req(comment={"text": None})), 400, bad, "comment.text"),
        BadAnalyze("comment.text empty", _j(_req(comment={"text": ""})), 400, bad, "comment.text"),
        BadAnalyze("comment.text whitespace", _j(_req(comment={"text": " \n\t "})), 400, bad, "comment.text"),
        # 10 241 characters but 20 482 bytes: the limit counts UTF-8 bytes, as Perspective's did.
        BadAnalyze("comment.text over 20 KB", _j(_req(comment={"text": "é" * 10241})), 400, bad, "comment.text"),
        BadAnalyze("comment.text lone surrogate", b'{"comment": {"text": "a\\ud800b"}, "requestedAttributes": '
                   b'{"TOXICITY": {}}}', 400, bad, "comment.text"),
        BadAnalyze("comment.type unknown", _j(_req(comment={"text": "hi", "type": "MARKDOWN"})), 400, bad,
                   "comment.type"),
        BadAnalyze("comment.type a number", _j(_req(comment={"text": "hi", "type": 1})), 400, bad, "comment.type"),
        BadAnalyze("comment unknown field", _j(_req(comment={"text": "hi", "lang": "en"})), 400, bad, "comment.lang",
                   named='"lang" at \'comment\''),
        BadAnalyze("HTML with no text", _j(_req(comment={"text": "<p><br></p>", "type": "HTML"})), 400, bad,
                   "comment.text"),
        # requestedAttributes
        BadAnalyze("no requestedAttributes", _j({"comment": {"text": "hi"}}), 400, bad, "requestedAttributes"),
        BadAnalyze("requestedAttributes empty", _j(_req(requestedAttributes={})), 400, bad, "requestedAttributes"),
        BadAnalyze("requestedAttributes an array", _j(_req(requestedAttributes=["TOXICITY"])), 400, bad,
                   "requestedAttributes"),
        BadAnalyze("unknown attribute", _j(_req(requestedAttributes={"FLIRTATION": {}})), 400, bad,
                   "requestedAttributes.FLIRTATION", named="attribute FLIRTATION is not supported"),
        BadAnalyze("attribute params a number", _j(_req(requestedAttributes={"TOXICITY": 1})), 400, bad,
                   "requestedAttributes.TOXICITY"),
        BadAnalyze("attribute params unknown field", _attr(threshold=0.5), 400, bad,
                   "requestedAttributes.TOXICITY.threshold", named='"threshold" at \'requestedAttributes.TOXICITY\''),
        BadAnalyze("scoreType unsupported", _attr(scoreType="STD_DEV_SCORE"), 400, bad,
                   "requestedAttributes.TOXICITY.scoreType"),
        BadAnalyze("scoreType a number", _attr(scoreType=1), 400, bad, "requestedAttributes.TOXICITY.scoreType"),
        BadAnalyze("scoreThreshold above 1", _attr(scoreThreshold=1.5), 400, bad,
                   "requestedAttributes.TOXICITY.scoreThreshold"),
        BadAnalyze("scoreThreshold below 0", _attr(scoreThreshold=-0.1), 400, bad,
                   "requestedAttributes.TOXICITY.scoreThreshold"),
        BadAnalyze("scoreThreshold a string", _attr(scoreThreshold="0.5"), 400, bad,
                   "requestedAttributes.TOXICITY.scoreThreshold"),
        BadAnalyze("scoreThreshold a boolean", _attr(scoreThreshold=True), 400, bad,
                   "requestedAttributes.TOXICITY.scoreThreshold"),
        # languages
        BadAnalyze("languages a string", _j(_req(languages="en")), 400, bad, "languages"),
        BadAnalyze("languages[0] a number", _j(_req(languages=[5])), 400, bad, "languages[0]"),
        BadAnalyze("unsupported language", _j(_req(languages=["ru"])), 400, bad, "languages",
                   error_type="LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE"),
        BadAnalyze("one of two languages unsupported", _j(_req(languages=["en", "de"])), 400, bad, "languages",
                   error_type="LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE"),
        # context
        BadAnalyze("both context forms", _j(_req(context={"entries": [{"text": "a"}], "articleAndParentComment": {
            "article": {"text": "b"}}})), 400, bad, "context"),
        BadAnalyze("context a string", _j(_req(context="earlier")), 400, bad, "context"),
        BadAnalyze("context.entries an object", _j(_req(context={"entries": {"text": "a"}})), 400, bad,
                   "context.entries"),
        BadAnalyze("context.entries[0].text a number", _j(_req(context={"entries": [{"text": 1}]})), 400, bad,
                   "context.entries[0].text"),
        BadAnalyze("context article type unknown", _j(_req(context={"articleAndParentComment": {
            "article": {"text": "a", "type": "PDF"}}})), 400, bad, "context.articleAndParentComment.article.type"),
        # flags and tokens
        BadAnalyze("doNotStore a string", _j(_req(doNotStore="yes")), 400, bad, "doNotStore"),
        BadAnalyze("spanAnnotations a number", _j(_req(spanAnnotations=1)), 400, bad, "spanAnnotations"),
        BadAnalyze("dropUnsupportedAttributes a string", _j(_req(dropUnsupportedAttributes="true")), 400, bad,
                   "dropUnsupportedAttributes"),
        BadAnalyze("clientToken a number", _j(_req(clientToken=5)), 400, bad, "clientToken"),
        BadAnalyze("sessionId an array", _j(_req(sessionId=["s"])), 400, bad, "sessionId"),
        BadAnalyze("communityId an object", _j(_req(communityId={"id": 1})), 400, bad, "communityId"),
        BadAnalyze("camel and snake spelling of one field", _j(_req(client_token="a", clientToken="b")), 400, bad,
                   "clientToken"),
        # Google's system parameters
        BadAnalyze("alt=proto", _j(_req()), 400, bad, "alt", query="alt=proto"),
        BadAnalyze("alt=media", _j(_req()), 400, bad, "alt", query="alt=media"),
        BadAnalyze("JSONP callback", _j(_req()), 400, bad, "callback", query="callback=cb"),
        BadAnalyze("unknown query parameter", _j(_req()), 400, bad, "foo", query="foo=1",
                   named='unknown name "foo"'),
        BadAnalyze("prettyPrint not a boolean", _j(_req()), 400, bad, "prettyPrint", query="prettyPrint=maybe"),
        BadAnalyze("$.xgafv unknown", _j(_req()), 400, bad, "$.xgafv", query="%24.xgafv=3"),
        # Routing under the Perspective prefix
        BadAnalyze("GET on analyze", None, 405, "UNIMPLEMENTED", "GET", method="GET", headers={}, violation=False),
        BadAnalyze("PUT on analyze", _j(_req()), 405, "UNIMPLEMENTED", "PUT", method="PUT", violation=False),
        BadAnalyze("unknown method", _j(_req()), 404, "NOT_FOUND", "comments:nope",
                   path="/v1alpha1/comments:nope", violation=False),
    ]
