"""The one error vocabulary: every error code, its HTTP status and message, and the one body builder.

ERRORS lists every code a client or a user can see, whoever answers:
    app       the Flask app (api/errors.py turns exceptions into responses)
    gunicorn  gunicorn's own answers to malformed HTTP (gunicorn_conf.py)
    nginx     the front's own answers (roles/nginx/templates/nginx.conf.j2,
              rendered from this table by api/front_errors.py; a test fails
              when the template drifts)
    cli       failures only the command line reports (message and exit 1)
`error_json` builds every JSON error body, `{"error": {"code", "message"}}`;
the OpenAPI document lists every HTTP code from this table.

Every failure a user can cause has one exception type here; its `status` is
looked up in ERRORS from its `code`, so nothing else decides a status code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

APP, GUNICORN, NGINX, CLI = "app", "gunicorn", "nginx", "cli"


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int
    message: str  # what the client reads when nothing more specific is known (nginx, gunicorn, 500s)
    emitted_by: tuple[str, ...]

    @property
    def http(self) -> bool:
        """True when a client can receive it over HTTP (everything not CLI-only)."""
        return any(who != CLI for who in self.emitted_by)


ERRORS: dict[str, ErrorCode] = {
    e.code: e
    for e in (
        ErrorCode("bad_request", 400, "the request is not valid HTTP or not a valid request", (APP, GUNICORN, NGINX)),
        ErrorCode("bad_input_file", 400, "an input file is missing or malformed", (CLI,)),
        # 401/403/429 from the app: API keys on the native API (TOXIC_API_KEYS_NATIVE; apikeys/).
        ErrorCode("unauthorized", 401, "an API key is required: send 'Authorization: Bearer KEY' or 'X-Api-Key: KEY'",
                  (APP,)),
        ErrorCode("forbidden", 403, "request forbidden", (APP, GUNICORN)),
        ErrorCode("not_found", 404, "no such route; see /openapi.json", (APP, NGINX)),  # nginx: its internal pages
        ErrorCode("method_not_allowed", 405, "method not allowed here", (APP,)),
        # {limit}: the byte limit, filled in by whoever answers (the app's setting, nginx's variable).
        ErrorCode(
            "payload_too_large", 413, "the request body is larger than the limit of {limit} bytes", (APP, NGINX)
        ),
        ErrorCode("uri_too_long", 414, "the request line is too long", (GUNICORN, NGINX)),
        ErrorCode("unsupported_media_type", 415, "send the body as JSON with 'Content-Type: application/json'", (APP,)),
        ErrorCode("range_not_satisfiable", 416, "the requested range is outside the file", (APP,)),  # static files
        ErrorCode("expectation_failed", 417, "the Expect header cannot be met", (GUNICORN,)),
        ErrorCode("rate_limited", 429, "too many requests; slow down", (NGINX,)),
        ErrorCode("quota_exceeded", 429, "this API key is over its quota; retry after Retry-After seconds", (APP,)),
        ErrorCode("headers_too_large", 431, "the request headers are too large", (GUNICORN, NGINX)),
        ErrorCode("internal_error", 500, "internal error; see the service log", (APP, GUNICORN, NGINX)),
        ErrorCode("bundle_error", 500, "the model bundle is missing, malformed or changed", (CLI,)),
        ErrorCode("vocabulary_mismatch", 500, "the model and the vocabulary do not belong together", (CLI,)),
        ErrorCode("configuration_error", 500, "a setting is wrong", (CLI,)),
        ErrorCode("not_implemented", 501, "the request uses an HTTP feature this server does not implement", (GUNICORN, NGINX)),
        ErrorCode("bad_gateway", 502, "the service is not answering; try again shortly", (NGINX,)),
        ErrorCode("store_unavailable", 503, "the vocabulary store does not answer; try again shortly", (APP,)),
        ErrorCode("not_ready", 503, "the model and vocabulary are not loaded yet; try again shortly", (APP,)),
        ErrorCode("unavailable", 503, "the service is unavailable; try again shortly", (NGINX,)),
        ErrorCode("gateway_timeout", 504, "the service took too long to answer", (NGINX,)),
    )
}

# nginx's 429 tells clients when to come back.
RETRY_AFTER_SECONDS = {"rate_limited": 1}


def error_for(status: int, emitter: str) -> ErrorCode:
    """The code `emitter` answers an HTTP `status` with (its first for that status in ERRORS).

    A status the table does not list for `emitter` falls back to internal_error
    (5xx) or bad_request (4xx): a client always gets a code from the table.
    """
    for error in ERRORS.values():
        if error.status == status and emitter in error.emitted_by:
            return error
    return ERRORS["internal_error" if status >= 500 else "bad_request"]


def error_body(code: str, message: str | None = None) -> dict[str, Any]:
    """`{"error": {"code", "message"}}` for a code in ERRORS (KeyError for any other: no ad-hoc codes)."""
    error = ERRORS[code]
    return {"error": {"code": error.code, "message": message or error.message}}


def error_json(code: str, message: str | None = None) -> bytes:
    """The JSON bytes of `error_body` (one line, UTF-8, ending in a newline), as every answer sends them."""
    return (json.dumps(error_body(code, message), ensure_ascii=False) + "\n").encode()


class ToxicServiceError(Exception):
    """Base class: `code` is the stable machine-readable error code; `status` comes from ERRORS."""

    code = "internal_error"
    status = 500

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.status = ERRORS[cls.code].status  # KeyError at import for a code the table lacks


class BadRequest(ToxicServiceError):
    code = "bad_request"


class PayloadTooLarge(ToxicServiceError):
    code = "payload_too_large"


class UnsupportedMediaType(ToxicServiceError):
    code = "unsupported_media_type"


class Unauthorized(ToxicServiceError):
    """No API key on a route that needs one."""

    code = "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="toxic-service"'}


class Forbidden(ToxicServiceError):
    """An API key that is not (or no longer) in the keys file."""

    code = "forbidden"


class QuotaExceeded(ToxicServiceError):
    """A known key over its quota; Retry-After says when a request will pass again."""

    code = "quota_exceeded"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class StoreUnavailable(ToxicServiceError):
    """The vocabulary store did not answer in time (MongoDB down, file gone)."""

    code = "store_unavailable"


class VocabularyError(StoreUnavailable):
    """A vocabulary file that cannot serve: missing, not SQLite, or without its `meta` table.

    A StoreUnavailable, so a worker keeps answering 503 and picks up a file
    fixed in place, as it does when the store is down.
    """


class NotReady(ToxicServiceError):
    code = "not_ready"


class BundleError(ToxicServiceError):
    """A model bundle is missing, malformed, or does not match the vocabulary."""

    code = "bundle_error"


class VocabularyMismatch(BundleError):
    code = "vocabulary_mismatch"


class ConfigurationError(ToxicServiceError):
    code = "configuration_error"
