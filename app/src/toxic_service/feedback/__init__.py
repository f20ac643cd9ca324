"""Feedback from `comments:suggestscore`, kept on this host: the stores (store.py: SQLite, mongo.py: MongoDB),
the CSV export for `train` (export.py) and the statistics against the current model (stats.py).

`feedback_store(settings)` is the one way to reach the store: one store per
place and process, whose connection opens on first use (after gunicorn
forks), never at import.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Union

from toxic_service.feedback.store import FeedbackStore
from toxic_service.settings import Settings

if TYPE_CHECKING:
    from toxic_service.feedback.mongo import MongoFeedbackStore

AnyFeedbackStore = Union[FeedbackStore, "MongoFeedbackStore"]

_stores: dict[tuple, AnyFeedbackStore] = {}
_lock = threading.Lock()


def uses_mongodb(settings: Settings) -> bool:
    """Feedback goes to MongoDB with the MongoDB vocabulary backend, unless TOXIC_FEEDBACK_DB names a SQLite file."""
    return settings.vocab_backend == "mongodb" and settings.feedback_db is None


def feedback_store(settings: Settings) -> AnyFeedbackStore:
    """The store the settings name, capped at TOXIC_FEEDBACK_MAX_BYTES.

    With the MongoDB vocabulary backend: the vocabulary's database (mongo.py), unless TOXIC_FEEDBACK_DB
    is set; otherwise the SQLite file TOXIC_FEEDBACK_DB (default <data_dir>/feedback.sqlite).
    """
    if uses_mongodb(settings):
        key: tuple = ("mongodb", settings.mongodb_uri.get_secret_value(), settings.mongodb_database,
                      settings.mongodb_timeout_ms, settings.feedback_max_bytes)
    else:
        key = ("sqlite", str(settings.feedback_file), settings.feedback_max_bytes)
    with _lock:
        store = _stores.get(key)
        if store is None:
            if key[0] == "mongodb":
                # pymongo is imported only where it is used (the SQLite path never needs it).
                from toxic_service.feedback.mongo import MongoFeedbackStore

                store = MongoFeedbackStore.from_settings(settings)
            else:
                store = FeedbackStore(settings.feedback_file, settings.feedback_max_bytes)
            _stores[key] = store
        return store


def feedback_location(settings: Settings) -> str:
    """Where the store the settings name keeps suggestions, for messages: the SQLite file, or
    "MongoDB <database>.<collection>" (never the URI: it may hold a password)."""
    store = feedback_store(settings)
    return store.where if uses_mongodb(settings) else str(store.path)
