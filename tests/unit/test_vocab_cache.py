"""The LRU cache in front of a real SQLite store: fewer queries, same answers, bounded size."""

from __future__ import annotations

import json
import threading

import pytest
from toxic_service.vocab.base import VocabularyStore
from toxic_service.vocab.cache import CachedVocabularyStore
from toxic_service.vocab.factory import open_store
from toxic_service.vocab.sqlite import SqliteVocabularyStore


@pytest.fixture()
def inner(tiny_sqlite_path):
    store = SqliteVocabularyStore(tiny_sqlite_path)
    yield store
    store.close()


def traced(store: SqliteVocabularyStore) -> list[list[str]]:
    """The words of every lookup query the SQLite store really runs (in this thread).

    sqlite3 traces each statement with its parameters written in: `json_each('["a","b"]')` or `IN ('a','b')`.
    """
    queries: list[list[str]] = []

    def record(sql: str) -> None:
        if "json_each(" in sql:
            literal = sql[sql.index("json_each(") + len("json_each(") : sql.index(") AS j")]
            queries.append(json.loads(literal[1:-1].replace("''", "'")))
        elif "IN (" in sql:
            queries.append(sql[sql.index("IN (") + 4 : sql.rindex(")")].split(","))

    store._conn().set_trace_callback(record)
    return queries


def test_cached_store_implements_the_interface(inner):
    assert isinstance(CachedVocabularyStore(inner, 10), VocabularyStore)


def test_second_lookup_is_served_from_cache(inner):
    cache = CachedVocabularyStore(inner, 100)
    queries = traced(inner)
    first = cache.lookup(["you", "idiot", "you"])
    assert first == {"you": 2, "idiot": 3}
    assert (cache.hits, cache.misses, len(queries)) == (0, 2, 1)
    assert cache.lookup(["idiot", "you"]) == first
    assert (cache.hits, cache.misses, len(queries)) == (2, 2, 1)


def test_unknown_words_are_cached_too(inner):
    cache = CachedVocabularyStore(inner, 100)
    queries = traced(inner)
    assert cache.lookup(["qwertyuiop", "you"]) == {"you": 2}
    assert cache.lookup(["qwertyuiop"]) == {}
    assert len(queries) == 1 and cache.hits == 1


def test_only_missing_words_are_asked_in_one_query(inner):
    cache = CachedVocabularyStore(inner, 100)
    cache.lookup(["you", "idiot"])
    queries = traced(inner)
    assert cache.lookup(["you", "idiot", "thank", "stupid", "nothere"]) == {"you": 2, "idiot": 3, "thank": 11, "stupid": 4}
    assert len(queries) == 1 and len(queries[0]) == 3


def test_size_is_bounded_and_least_recently_used_goes_first(inner):
    cache = CachedVocabularyStore(inner, 3)
    cache.lookup(["the"])
    cache.lookup(["you"])
    cache.lookup(["idiot"])
    cache.lookup(["the"])  # "the" is now the most recent: "you" is the oldest
    cache.lookup(["stupid"])
    assert len(cache) == 3
    queries = traced(inner)
    cache.lookup(["the", "idiot", "stupid"])
    assert queries == []
    cache.lookup(["you"])
    assert len(queries) == 1


def test_on_lookup_receives_each_lookups_counts(inner):
    seen: list[tuple[int, int]] = []
    cache = CachedVocabularyStore(inner, 10, on_lookup=lambda h, m: seen.append((h, m)))
    cache.lookup(["you", "idiot"])
    cache.lookup(["you", "thank", "you"])
    assert seen == [(0, 2), (1, 1)]


def test_concurrent_lookups_agree_with_the_store(inner, tiny_vocab_pairs):
    cache = CachedVocabularyStore(inner, 8)  # smaller than the vocabulary: constant eviction
    words = [w for w, _ in tiny_vocab_pairs] + ["unknown1", "unknown2"]
    expected = dict(tiny_vocab_pairs)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(200):
                chunk = [words[(offset + i + k) % len(words)] for k in range(5)]
                assert cache.lookup(chunk) == {w: expected[w] for w in chunk if w in expected}
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n * 7,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(cache) <= 8
    assert cache.hits + cache.misses == 6 * 200 * 5  # each of the 5 distinct words of every lookup counted once


def test_factory_wraps_the_store_unless_the_cache_is_disabled(tiny_settings):
    cached = open_store(tiny_settings)
    assert isinstance(cached, CachedVocabularyStore) and cached.max_entries == tiny_settings.cache_entries
    plain = open_store(tiny_settings.replace(**{"cache_entries": 0}))
    assert isinstance(plain, SqliteVocabularyStore)
    assert cached.info() == plain.info()
    cached.close()
    plain.close()


def test_zero_entries_is_refused_by_the_wrapper(inner):
    with pytest.raises(ValueError, match="at least 1"):
        CachedVocabularyStore(inner, 0)
