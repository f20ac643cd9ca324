"""Structured logs: one JSON object per line on stderr.

Standard library only, outside the `api` package: gunicorn's master loads this
formatter, and importing `toxic_service.api` would load Flask, numpy and
prometheus_client into the master (~20 MB it never uses).

Comment text is personal data: nothing here logs it unless `log_text` is on,
and then only through the `text` field a caller passes explicitly.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# LogRecord attributes that are not user-supplied `extra` fields.
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON; `extra={...}` keys become fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            # Tracebacks go to the log (one line, escaped), never to a client.
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def configure_logging(level: int = logging.INFO) -> None:
    """Send the `toxic_service` loggers to stderr as JSON lines (idempotent)."""
    logger = logging.getLogger("toxic_service")
    if not any(getattr(h, "_toxic_json", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._toxic_json = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)
    # Our handler is the only one: do not also print through gunicorn's root handlers.
    logger.propagate = False
