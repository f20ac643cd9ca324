"""Holds the worker's scorer, and builds it again later if the store was down.

The scorer (model + vocabulary) is built when the worker imports the app,
after gunicorn forks. If the vocabulary store does not answer then, the worker
still starts: /readyz says 503 and requests retry the build, at most once per
`retry_interval` seconds, so a store that comes back is picked up without a
restart. A model that does not match its vocabulary is not retried into
service: it is fatal at start-up and logged as critical on every later attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from toxic_service.api import metrics
from toxic_service.errors import NotReady, StoreUnavailable, ToxicServiceError
from toxic_service.settings import Settings

log = logging.getLogger("toxic_service.api")

RETRY_INTERVAL_SECONDS = 2.0


def _count_cache(hits: int, misses: int) -> None:
    metrics.VOCAB_CACHE_HITS.inc(hits)
    metrics.VOCAB_CACHE_MISSES.inc(misses)


def _default_builder(settings: Settings) -> Any:
    from toxic_service.scoring import build_scorer

    scorer = build_scorer(settings, on_lookup=_count_cache)
    # Load this thread's model now: the first request should not pay for it, and a
    # model that cannot load should stop the worker at start-up, not fail requests.
    scorer.runtime()
    return scorer


class ScorerHolder:
    def __init__(
        self,
        settings: Settings,
        builder: Callable[[Settings], Any] = _default_builder,
        retry_interval: float = RETRY_INTERVAL_SECONDS,
    ) -> None:
        self._settings = settings
        self._builder = builder
        self._retry_interval = retry_interval
        self._lock = threading.Lock()
        self._scorer: Any = None
        self._last_attempt = float("-inf")
        self._last_error = "the model and vocabulary have not been loaded yet"

    @property
    def scorer(self) -> Any:
        """The scorer if it is built, else None (never triggers a build)."""
        return self._scorer

    def start(self) -> None:
        """First build, at app creation: a store that is down is survivable, anything else is fatal."""
        self._attempt(fatal=True)

    def get(self) -> Any:
        """The scorer, building it if it is missing and a retry is due; else NotReady."""
        scorer = self._scorer
        if scorer is not None:
            return scorer
        with self._lock:
            if self._scorer is None and time.monotonic() - self._last_attempt >= self._retry_interval:
                self._attempt(fatal=False)
            if self._scorer is None:
                raise NotReady(f"not ready: {self._last_error}")
            return self._scorer

    def _attempt(self, fatal: bool) -> None:
        self._last_attempt = time.monotonic()
        started = time.perf_counter()
        try:
            scorer = self._builder(self._settings)
        except StoreUnavailable as exc:
            metrics.SCORER_BUILDS.labels("store_unavailable").inc()
            self._last_error = str(exc)
            log.warning(
                "vocabulary store unavailable; serving 503 and retrying",
                extra={"event": "scorer_build", "outcome": "store_unavailable", "detail": str(exc),
                       "retry_seconds": self._retry_interval},
            )
            return
        except ToxicServiceError as exc:
            metrics.SCORER_BUILDS.labels("fatal").inc()
            self._last_error = str(exc)
            log.critical(
                "cannot serve: %s", exc, extra={"event": "scorer_build", "outcome": "fatal", "code": exc.code}
            )
            if fatal:
                raise
            return
        metrics.SCORER_BUILDS.labels("ok").inc()
        self._scorer = scorer
        log.info(
            "model and vocabulary loaded",
            extra={"event": "scorer_build", "outcome": "ok", "labels": list(scorer.labels),
                   "seconds": round(time.perf_counter() - started, 3)},
        )
