"""GET /$discovery/rest?version=v1alpha1: Perspective's discovery document, pointing at this server.

Google's own client libraries (Python google-api-python-client, Node googleapis)
are discovery-based: they fetch this document, then send every call to
`rootUrl + servicePath + method.path`. So the document has the shape of
Google's commentanalyzer v1alpha1 document (the same names, `id`s, paths,
schemas, property names, types and enums, and Google's standard system
parameters), with two differences that make those clients talk to us:

- `rootUrl` (and `baseUrl`) is this server as the client reached it: the
  scheme of the request and its Host header. Behind nginx that is the
  client's view: nginx passes `Host` and `X-Forwarded-Proto`, and gunicorn
  turns X-Forwarded-Proto into the request's scheme for peers it trusts (its
  unix socket, where nginx connects, and `forwarded_allow_ips`, loopback by
  default); an untrusted peer's X-Forwarded-Proto is ignored, as gunicorn
  ignores it. Served directly (gunicorn on TCP, Flask's dev server) it is the
  request's own scheme and Host. The Host value is client input that the
  client library will follow, so it must be a plain `hostname[:port]`, an
  IPv4 address or a bracketed IPv6 address (else INVALID_ARGUMENT, 400): no
  path, user info or other text reaches the document. As every API answer,
  it goes out with `Cache-Control: no-store` (api/__init__.py), so no shared
  cache hands one client's Host to another.
- no OAuth: there is no `auth` section and no method `scopes`, so a client
  built without a key does not go looking for Google credentials; the key is
  the `key` parameter (or the X-Goog-Api-Key header), as with Perspective.

The descriptions are ours and say what this server does (which attributes
the served model has, that only PROBABILITY scores and JSON answers exist).
There is no mTLS endpoint (`mtlsRootUrl` is absent: a client never switches
to another address) and no batch endpoint (`batchPath` is Google's "batch",
on this server, where /batch is the native API's 404: a batch request fails
here rather than going to Google, where a client without batchPath sends it).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from flask import Request, current_app

from toxic_service.perspective.errors import PerspectiveError, invalid_argument

NAME = "commentanalyzer"
VERSION = "v1alpha1"
# The revision of Google's document whose shape this copies (plus dropUnsupportedAttributes, added later).
REVISION = "20200301"
_SCORE_TYPES = ["SCORE_TYPE_UNSPECIFIED", "PROBABILITY", "STD_DEV_SCORE", "PERCENTILE", "RAW"]
_TEXT_TYPES = ["TEXT_TYPE_UNSPECIFIED", "PLAIN_TEXT", "HTML"]

# One DNS label (letters, digits, inner hyphens; at most 63), dot-separated; the whole name at most 253.
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII | re.IGNORECASE)
_HOST_PORT = re.compile(r"(?P<host>\[[0-9a-f:.]+\]|[^:\[\]]+)(?::(?P<port>[0-9]{1,5}))?", re.ASCII | re.IGNORECASE)
_DOTTED_DIGITS = re.compile(r"[0-9.]+", re.ASCII)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def discovery_document(request: Request) -> dict[str, Any]:
    """The v1alpha1 document for `request` (NOT_FOUND for any other `version`; INVALID_ARGUMENT for a bad Host)."""
    version = request.args.get("version")
    if version != VERSION:
        # The asked-for version is not echoed: the message stays ours, whatever the query held.
        asked = "no version given" if version is None else "that version is not served"
        raise PerspectiveError(
            "NOT_FOUND",
            f"Discovery document not found for API service {NAME}, format rest ({asked}); "
            f"this server serves version={VERSION}",
        )
    root = root_url(request)
    return _document(root, _attributes_text())


def root_url(request: Request) -> str:
    """`scheme://host[:port]/` as the client reached this server (see the module docstring)."""
    scheme = request.scheme
    if scheme not in _DEFAULT_PORTS:
        raise invalid_argument(f"the request's scheme '{scheme[:10]}' is not http or https")
    host = request.headers.get("Host")
    if host is None:
        raise invalid_argument(
            "the request has no Host header: the discovery document's rootUrl is built from it (send HTTP/1.1)"
        )
    return f"{scheme}://{normalize_host(host, scheme)}/"


def normalize_host(value: str, scheme: str) -> str:
    """A Host header value as `hostname[:port]`, lower case, the scheme's default port left out.

    Raises INVALID_ARGUMENT (naming the Host header, never echoing it: it may hold anything) unless it is a
    DNS name (letters, digits, hyphens, dots), an IPv4 address or a bracketed IPv6 address, with an
    optional port 1-65535.
    """
    match = _HOST_PORT.fullmatch(value.strip())
    host, port = (match["host"], match["port"]) if match else ("", None)
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            host = ""
    elif len(host.rstrip(".")) > 253 or not _HOSTNAME.fullmatch(host.rstrip(".")):
        host = ""
    elif _DOTTED_DIGITS.fullmatch(host):
        try:  # all-digit labels are an IPv4 address or nothing (999.1.1.1 is no host)
            ipaddress.IPv4Address(host)
        except ValueError:
            host = ""
    if not host or (port is not None and not 1 <= int(port) <= 65535):
        raise invalid_argument(
            "the Host header is not a valid host name or address with an optional port (hostname[:port], "
            "letters, digits, '-' and '.' only): the discovery document's rootUrl is built from it",
            field="Host",
        )
    host = host.lower().rstrip(".")
    if port is not None and int(port) != _DEFAULT_PORTS[scheme]:
        return f"{host}:{int(port)}"
    return host


def _attributes_text() -> str:
    """Which attributes the served model has, for the requestedAttributes description (from the bundle)."""
    holder = current_app.extensions.get("toxic_service.holder")
    scorer = holder.scorer if holder is not None else None  # never loads: a doc must not wait for a model
    attributes = getattr(getattr(scorer, "metadata", None), "perspective_attributes", None) if scorer else None
    if not attributes:
        return "The attributes are those of the served model (its metadata.json perspective_attributes)."
    listed = ", ".join(f"{name} (label {label})" for name, label in attributes.items())
    return f"The served model has: {listed}."


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "type": "string", **extra}


def _strings(description: str) -> dict[str, Any]:
    return {"description": description, "items": {"type": "string"}, "type": "array"}


def _ref(name: str, description: str) -> dict[str, Any]:
    return {"$ref": name, "description": description}


def _schema(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "id": name, "properties": properties, "type": "object"}


def _score_type(description: str) -> dict[str, Any]:
    return _string(
        description,
        enum=_SCORE_TYPES,
        enumDescriptions=[
            "Unset: PROBABILITY.",
            "A probability in [0, 1]: the only score type this server returns.",
            "Not served (INVALID_ARGUMENT).",
            "Not served (INVALID_ARGUMENT).",
            "Not served (INVALID_ARGUMENT).",
        ],
    )


def _method(name: str, description: str, request: str, response: str) -> dict[str, Any]:
    path = f"{VERSION}/comments:{name}"
    return {
        "description": description,
        "flatPath": path,
        "httpMethod": "POST",
        "id": f"{NAME}.comments.{name}",
        "parameterOrder": [],
        "parameters": {},
        "path": path,
        "request": {"$ref": request},
        "response": {"$ref": response},
    }


def _system_parameters() -> dict[str, Any]:
    """Google's standard query parameters, as every Google discovery document lists them."""

    def query(description: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
        return {"description": description, "location": "query", "type": kind, **extra}

    return {
        "$.xgafv": query("Error format version (accepted; errors always have Google's v2 JSON shape).",
                         enum=["1", "2"], enumDescriptions=["v1 error format", "v2 error format"]),
        "access_token": query("OAuth access token (not used: this server authenticates by API key)."),
        "alt": query("Data format for the response: only json is served.", default="json",
                     enum=["json", "media", "proto"],
                     enumDescriptions=["JSON (the only format served)", "Not served", "Not served"]),
        "callback": query("JSONP callback: refused (INVALID_ARGUMENT)."),
        "fields": query("Selector for a partial response (accepted; the whole response is returned)."),
        "key": query("API key, as issued by `toxic-service keys create` on this server."),
        "oauth_token": query("OAuth 2.0 token (not used: this server authenticates by API key)."),
        "prettyPrint": query("Indent the JSON response.", "boolean", default="true"),
        "quotaUser": query("Accepted for compatibility; quotas are per API key."),
        "uploadType": query("Legacy upload protocol for media (no media uploads here)."),
        "upload_protocol": query("Upload protocol for media (no media uploads here)."),
    }


def _schemas(attributes: str) -> dict[str, Any]:
    text_entry = _schema("TextEntry", "A body of text.", {
        "text": _string("The text (UTF-8 in the request body)."),
        "type": _string("The kind of text: HTML is scored without its markup; span offsets still point into "
                        "the original string.", enum=_TEXT_TYPES,
                        enumDescriptions=["Unset: plain text.", "Plain text.", "HTML."]),
    })
    context = _schema("Context", "What the comment refers or replies to. Set only one of the fields: both at "
                                 "once is INVALID_ARGUMENT. Accepted; the model scores the comment alone.", {
        "articleAndParentComment": _ref("ArticleAndParentComment", "The article and the parent comment."),
        "entries": {"description": "A list of messages, e.g. a thread.", "items": {"$ref": "TextEntry"},
                    "type": "array"},
    })
    article = _schema("ArticleAndParentComment", "Context of a comment on a one-level threaded board.", {
        "article": _ref("TextEntry", "The content the comment is about (article, summary, transcript)."),
        "parentComment": _ref("TextEntry", "The comment this one replies to, if any."),
    })
    parameters = _schema("AttributeParameters", "Parameters for scoring one attribute.", {
        "scoreThreshold": {"description": "Leave the attribute out of the response when its score is below "
                                          "this value (in [0, 1]).", "format": "float", "type": "number"},
        "scoreType": _score_type("The type of score to return; unset means PROBABILITY."),
    })
    score = _schema("Score", "A score value and its type.", {
        "type": _score_type("The type of the value."),
        "value": {"description": "The score.", "format": "float", "type": "number"},
    })
    span = _schema("SpanScore", "A score for one span of the text (a sentence).", {
        "begin": {"description": "Start of the span in the original text, in UTF-16 code units; with end "
                                 "(exclusive) it selects the span. Unset: the whole text.",
                  "format": "int32", "type": "integer"},
        "end": {"description": "End of the span (exclusive), in UTF-16 code units.", "format": "int32",
                "type": "integer"},
        "score": _ref("Score", "The span's score."),
    })
    scores = _schema("AttributeScores", "The scores of one attribute: the whole comment and, when asked, "
                                        "each sentence.", {
        "spanScores": {"description": "Per-span (per-sentence) scores, with spanAnnotations.",
                       "items": {"$ref": "SpanScore"}, "type": "array"},
        "summaryScore": _ref("Score", "The score of the comment as a whole."),
    })
    languages = _strings("The language(s) of the comment (ISO 639 / BCP-47 codes). A language the served "
                         "model does not serve is LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE (INVALID_ARGUMENT).")
    analyze_request = _schema("AnalyzeCommentRequest", "The comment analysis request.", {
        "clientToken": _string("Opaque token echoed in the response."),
        "comment": _ref("TextEntry", "The comment to analyze."),
        "communityId": _string("Identifier of the client's community (accepted; kept with suggestions)."),
        "context": _ref("Context", "The context of the comment."),
        "doNotStore": {"description": "Accepted: this server never stores an analyzed comment.",
                       "type": "boolean"},
        "dropUnsupportedAttributes": {"description": "Leave requested attributes the served model does not "
                                                     "have out of the response instead of answering "
                                                     "INVALID_ARGUMENT.", "type": "boolean"},
        "languages": languages,
        "requestedAttributes": {"additionalProperties": {"$ref": "AttributeParameters"},
                                "description": "The attributes to score, by name, each with its parameters. "
                                               + attributes, "type": "object"},
        "sessionId": _string("Session identifier joining related calls (accepted)."),
        "spanAnnotations": {"description": "Also return per-sentence span scores.", "type": "boolean"},
    })
    analyze_response = _schema("AnalyzeCommentResponse", "The comment analysis response.", {
        "attributeScores": {"additionalProperties": {"$ref": "AttributeScores"},
                            "description": "Scores of the requested attributes, by name (an attribute below "
                                           "its scoreThreshold is left out).", "type": "object"},
        "clientToken": _string("The request's clientToken."),
        "detectedLanguages": _strings("The languages of the text, most likely first (the served model's "
                                      "languages: see docs/perspective.md)."),
        "languages": _strings("The languages used to choose the model: the request's, else the detected ones."),
    })
    suggest_request = _schema("SuggestCommentScoreRequest", "A suggested score for a comment (feedback kept "
                                                            "on this host, exportable as training data).", {
        "attributeScores": {"additionalProperties": {"$ref": "AttributeScores"},
                            "description": "The suggested scores by attribute name; must not be empty. A "
                                           "summaryScore for the whole comment, or spanScores with begin and "
                                           "end set; values in [0, 1].", "type": "object"},
        "clientToken": _string("Opaque token echoed in the response."),
        "comment": _ref("TextEntry", "The comment being scored."),
        "communityId": _string("Identifier of the client's community (stored with the suggestion)."),
        "context": _ref("Context", "The context of the comment."),
        "languages": languages,
        "sessionId": _string("Session identifier joining related calls (stored with the suggestion)."),
    })
    suggest_response = _schema("SuggestCommentScoreResponse", "The answer to a score suggestion.", {
        "clientToken": _string("The request's clientToken."),
        "detectedLanguages": _strings("The languages detected in the comment."),
        "requestedLanguages": _strings("The languages given in the request."),
    })
    return {s["id"]: s for s in (analyze_request, analyze_response, article, parameters, scores, context, score,
                                 span, suggest_request, suggest_response, text_entry)}


def _document(root: str, attributes: str) -> dict[str, Any]:
    return {
        "basePath": "",
        "baseUrl": root,
        "batchPath": "batch",
        "canonicalName": "Comment Analyzer",
        "description": "A self-hosted drop-in for the Perspective Comment Analyzer API (toxic-service): scores "
                       "comments with the model served on this host and keeps score suggestions on this host.",
        "discoveryVersion": "v1",
        "id": f"{NAME}:{VERSION}",
        "kind": "discovery#restDescription",
        "name": NAME,
        "ownerName": "toxic-service",
        "parameters": _system_parameters(),
        "protocol": "rest",
        "resources": {
            "comments": {
                "methods": {
                    "analyze": _method("analyze", "Scores the comment for the requested attributes.",
                                       "AnalyzeCommentRequest", "AnalyzeCommentResponse"),
                    "suggestscore": _method("suggestscore", "Stores suggested scores for a comment as "
                                            "training data on this host.", "SuggestCommentScoreRequest",
                                            "SuggestCommentScoreResponse"),
                }
            }
        },
        "revision": REVISION,
        "rootUrl": root,
        "schemas": _schemas(attributes),
        "servicePath": "",
        "title": "Perspective Comment Analyzer API (toxic-service)",
        "version": VERSION,
        "version_module": True,
    }
