"""Open the vocabulary store the settings name, with the LRU cache in front."""

from __future__ import annotations

from collections.abc import Callable

from toxic_service.errors import ConfigurationError
from toxic_service.settings import Settings
from toxic_service.vocab.base import VocabularyStore
from toxic_service.vocab.cache import CachedVocabularyStore


def open_store(settings: Settings, *, on_lookup: Callable[[int, int], None] | None = None) -> VocabularyStore:
    """The configured backend, wrapped in a CachedVocabularyStore unless cache_entries is 0.

    Backends connect lazily (per thread, per process), so calling this before a
    fork is safe; `on_lookup(hits, misses)` feeds cache counters to metrics.
    """
    store: VocabularyStore
    if settings.vocab_backend == "sqlite":
        from toxic_service.vocab.sqlite import SqliteVocabularyStore

        store = SqliteVocabularyStore(settings.sqlite_file)
    elif settings.vocab_backend == "mongodb":
        from toxic_service.vocab.mongo import MongoVocabularyStore

        store = MongoVocabularyStore.from_settings(settings)
    else:  # pragma: no cover - Settings' Literal already refuses other values
        raise ConfigurationError(f"unknown vocab_backend {settings.vocab_backend!r}")
    if settings.cache_entries > 0:
        return CachedVocabularyStore(store, settings.cache_entries, on_lookup=on_lookup)
    return store
