"""Feedback from `comments:suggestscore`, kept on this host: the store (store.py), the CSV export for `train`
(export.py) and the statistics against the current model (stats.py).

`feedback_store(settings)` is the one way to reach the store: one FeedbackStore
per file and process, whose connection opens on first use (after gunicorn
forks), never at import.
"""

from __future__ import annotations

import threading

from toxic_service.feedback.store import FeedbackStore, FeedbackUnavailable
from toxic_service.settings import Settings

_stores: dict[tuple[str, int], FeedbackStore] = {}
_lock = threading.Lock()


def feedback_store(settings: Settings) -> FeedbackStore:
    """The SQLite store the settings name (TOXIC_FEEDBACK_DB, capped at TOXIC_FEEDBACK_MAX_BYTES).

    With the MongoDB vocabulary backend the issue wants feedback in that database; that store
    is not written yet, so unless TOXIC_FEEDBACK_DB names a SQLite file explicitly this refuses
    (FeedbackUnavailable) rather than quietly putting feedback somewhere the operator did not choose.
    """
    if settings.vocab_backend == "mongodb" and settings.feedback_db is None:
        raise FeedbackUnavailable(
            "feedback in MongoDB is not implemented: with TOXIC_VOCAB_BACKEND=mongodb set TOXIC_FEEDBACK_DB "
            "to a SQLite file on this host to keep suggestscore feedback there"
        )
    key = (str(settings.feedback_file), settings.feedback_max_bytes)
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = FeedbackStore(settings.feedback_file, settings.feedback_max_bytes)
        return store
