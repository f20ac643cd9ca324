"""Google's JSON error shape for the Perspective routes: the one owner of it.

Every error under /v1alpha1/ and /$discovery is what Google's APIs answer:

    {"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT", "details": [...]}}

`code` is the HTTP status, `status` the google.rpc.Code name. `details` holds
typed entries as Google's APIs send them:
  - Perspective's own errorType (e.g. LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE) as
    {"@type": "type.googleapis.com/google.commentanalyzer.v1alpha1.Error",
     "errorType": ..., <payload such as languageNotSupportedByAttributeError>};
  - the offending request field as a google.rpc.BadRequest fieldViolation;
  - for RESOURCE_EXHAUSTED, a google.rpc.RetryInfo (and a Retry-After header).

For other helpers of the Perspective package (keys and quotas, suggestscore):
raise the exception from one of the constructors below, never build a body
yourself; the blueprint's handlers (perspective/__init__.py) render it:

    raise invalid_argument("comment.text is empty", field="comment.text")
    raise permission_denied("The request is missing a valid API key.")
    raise resource_exhausted("Quota exceeded for key 'forum'.", retry_after=1)
    raise PerspectiveError("UNIMPLEMENTED", "...")

A message never carries a key, a path or a host: it goes to the client as is.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request

# google.rpc.Code -> the HTTP status Google's APIs answer it with (google/rpc/code.proto).
GOOGLE_STATUS: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
PERSPECTIVE_ERROR_TYPE = "type.googleapis.com/google.commentanalyzer.v1alpha1.Error"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"


class PerspectiveError(Exception):
    """One Google-shaped error. `http` overrides the status's usual HTTP code (413 for a body too large).

    `error_type` is Perspective's errorType, `error_payload` its companion object
    (keyed by Perspective's name for it, e.g. {"languageNotSupportedByAttributeError": {...}});
    `field` names the request field at fault (a google.rpc.BadRequest fieldViolation);
    `headers` are added to the response (Allow, Retry-After).
    """

    def __init__(
        self,
        status: str,
        message: str,
        *,
        error_type: str | None = None,
        http: int | None = None,
        field: str | None = None,
        error_payload: dict[str, Any] | None = None,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if status not in GOOGLE_STATUS:
            raise ValueError(f"PerspectiveError: unknown google.rpc status {status!r}")
        super().__init__(message)
        self.status = status
        self.message = message
        self.http = http or GOOGLE_STATUS[status]
        self.error_type = error_type
        self.field = field
        self.error_payload = dict(error_payload or {})
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    def details(self) -> list[dict[str, Any]]:
        details: list[dict[str, Any]] = []
        if self.error_type:
            details.append({"@type": PERSPECTIVE_ERROR_TYPE, "errorType": self.error_type, **self.error_payload})
        if self.field:
            details.append(
                {"@type": BAD_REQUEST_TYPE, "fieldViolations": [{"field": self.field, "description": self.message}]}
            )
        if self.retry_after is not None:
            details.append({"@type": RETRY_INFO_TYPE, "retryDelay": f"{self.retry_after}s"})
        return details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.http, "message": self.message, "status": self.status}
        details = self.details()
        if details:
            error["details"] = details
        return {"error": error}

    def response(self) -> Response:
        response = json_response(self.body(), self.http)
        for name, value in self.headers.items():
            response.headers[name] = value
        if self.retry_after is not None:
            response.headers["Retry-After"] = str(self.retry_after)
        return response


def invalid_argument(message: str, *, field: str | None = None, error_type: str | None = None,
                     error_payload: dict[str, Any] | None = None, http: int | None = None) -> PerspectiveError:
    return PerspectiveError(
        "INVALID_ARGUMENT", message, field=field, error_type=error_type, error_payload=error_payload, http=http
    )


def permission_denied(message: str) -> PerspectiveError:
    return PerspectiveError("PERMISSION_DENIED", message)


def resource_exhausted(message: str, retry_after: int) -> PerspectiveError:
    return PerspectiveError("RESOURCE_EXHAUSTED", message, retry_after=retry_after)


def unimplemented(message: str) -> PerspectiveError:
    return PerspectiveError("UNIMPLEMENTED", message)


def pretty_print() -> bool:
    """Google's `prettyPrint` system parameter: true unless the request says false (as Google's APIs)."""
    return request.args.get("prettyPrint", "true").strip().lower() not in ("false", "0")


def json_response(doc: dict[str, Any], status: int = 200) -> Response:
    """The blueprint's one JSON writer: indented unless prettyPrint=false, UTF-8, key order kept."""
    indent = 2 if pretty_print() else None
    separators = (",", ": ") if indent else (",", ":")
    text = json.dumps(doc, ensure_ascii=False, indent=indent, separators=separators) + "\n"
    return Response(text.encode(), status=status, mimetype="application/json")
