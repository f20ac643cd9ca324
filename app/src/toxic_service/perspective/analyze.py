"""POST /v1alpha1/comments:analyze (work in progress: the body reader is final, the view is not yet)."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, request

from toxic_service.api.routes import _read_body
from toxic_service.api.validation import parse_json
from toxic_service.errors import BadRequest
from toxic_service.perspective.errors import PerspectiveError, invalid_argument


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
        raise invalid_argument("the request body must be a JSON object")
    return doc


def analyze_view() -> Response:
    read_json_body()
    raise PerspectiveError("UNIMPLEMENTED", "comments:analyze is being written")
