"""SQLite vocabulary: written atomically and checked, read read-only, one query per request."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
from pathlib import Path

import pytest
from toxic_service.errors import BadRequest, StoreUnavailable
from toxic_service.vocab.base import VocabularyStore
from toxic_service.vocab.checksum import vocabulary_checksum
from toxic_service.vocab.sqlite import SqliteVocabularyStore, write_sqlite


@pytest.fixture()
def store(tiny_sqlite_path):
    s = SqliteVocabularyStore(tiny_sqlite_path)
    yield s
    s.close()


def count_selects(store: SqliteVocabularyStore) -> list[str]:
    """Every SELECT the store's connection for this thread really runs."""
    statements: list[str] = []
    store._conn().set_trace_callback(lambda sql: statements.append(sql) if sql.lstrip().upper().startswith("SELECT") else None)
    return statements


def test_store_implements_the_interface(store):
    assert isinstance(store, VocabularyStore)


def test_lookup_returns_known_words_and_leaves_out_unknown(store, tiny_vocab_pairs):
    index = dict(tiny_vocab_pairs)
    got = store.lookup(["idiot", "thank", "zzzunknown", "café", "idiot"])
    assert got == {"idiot": index["idiot"], "thank": index["thank"], "café": index["café"]}
    assert store.lookup([]) == {}


def test_info_matches_the_pairs_it_was_written_from(store, tiny_vocab_pairs):
    info = store.info()
    assert info.checksum == vocabulary_checksum(tiny_vocab_pairs)
    assert info.size == len(tiny_vocab_pairs) and info.index_base == 1 and info.source
    assert list(store.iter_pairs()) == sorted(tiny_vocab_pairs, key=lambda p: p[1])


def test_checksum_is_sha256_of_word_tab_index_lines():
    expected = "sha256:" + hashlib.sha256(b"the\t1\nyou\t2\n").hexdigest()
    assert vocabulary_checksum([("the", 1), ("you", 2)]) == expected
    with pytest.raises(ValueError, match="ascending"):
        vocabulary_checksum([("you", 2), ("the", 1)])


def test_checksum_does_not_depend_on_the_order_pairs_are_written_in(tmp_path, tiny_vocab_pairs):
    shuffled = list(tiny_vocab_pairs)
    random.Random(4).shuffle(shuffled)
    info = write_sqlite(tmp_path / "v.sqlite", shuffled, source="t", index_base=1)
    assert info.checksum == vocabulary_checksum(tiny_vocab_pairs)


@pytest.mark.parametrize("json_each", [True, False], ids=["json_each", "in-list"])
def test_one_query_per_lookup_whatever_the_number_of_words(store, tiny_vocab_pairs, json_each):
    statements = count_selects(store)
    store._has_json = json_each  # False: as on an SQLite without json_each
    words = [w for w, _ in tiny_vocab_pairs] + [f"unknown{i}" for i in range(100)]
    assert store.lookup(words) == dict(tiny_vocab_pairs)
    assert len(statements) == 1 and ("json_each(" if json_each else " IN (") in statements[0]


def test_lookup_chunks_only_above_sqlites_variable_limit(store, tiny_vocab_pairs):
    conn = store._conn()
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)
    store._has_json = False  # the IN form binds one variable per word
    statements = count_selects(store)
    words = [w for w, _ in tiny_vocab_pairs]  # 39 words -> 4 queries of at most 10
    assert store.lookup(words) == dict(tiny_vocab_pairs)
    assert len(statements) == -(-len(words) // 10)


def test_words_holding_nul_are_looked_up_whole(tmp_path):
    # json_each would cut "a\0c" at the NUL and find "a": such words must take the IN form.
    write_sqlite(tmp_path / "v.sqlite", [("a", 1), ("a\x00b", 2), ("naïve", 3)], source="t", index_base=1)
    store = SqliteVocabularyStore(tmp_path / "v.sqlite")
    try:
        assert store.lookup(["a\x00c", "a\x00", "naïve"]) == {"naïve": 3}
        assert store._has_json  # this machine's SQLite: the JSON form was the one under test
        assert store.lookup(["a\x00b", "a"]) == {"a\x00b": 2, "a": 1}
    finally:
        store.close()


def test_the_store_cannot_write(store):
    with pytest.raises(sqlite3.OperationalError, match="readonly|read-only|query_only|attempt to write"):
        store._conn().execute("INSERT INTO vocab(word, idx) VALUES ('new', 999)")
    with pytest.raises(sqlite3.OperationalError):
        store._conn().execute("DELETE FROM vocab")
    assert store.lookup(["the"]) == {"the": 1}


def test_the_file_is_opened_read_only_even_without_query_only(tiny_sqlite_path):
    store = SqliteVocabularyStore(tiny_sqlite_path)
    conn = store._conn()
    conn.execute("PRAGMA query_only = OFF")  # the second guard off: mode=ro must still refuse
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("UPDATE vocab SET idx = idx + 1000")
    store.close()


def test_missing_file_is_store_unavailable(tmp_path):
    with pytest.raises(StoreUnavailable, match="does not exist"):
        SqliteVocabularyStore(tmp_path / "nope.sqlite")


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b""])
def test_a_file_that_is_not_a_vocabulary_is_store_unavailable(tmp_path, content):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(content)
    store = SqliteVocabularyStore(path)
    with pytest.raises(StoreUnavailable):
        store.lookup(["the"])
    with pytest.raises(StoreUnavailable):
        store.info()


def test_each_thread_gets_its_own_connection(store):
    seen: dict[str, object] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            for _ in range(50):
                assert store.lookup(["idiot", "you"]) == {"idiot": 3, "you": 2}
            seen[name] = store._conn()
        except BaseException as exc:  # collected: an assert in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len({id(c) for c in seen.values()}) == 4


BAD_INPUTS = [
    ([("a", 1), ("a", 2)], "duplicate word 'a'"),
    ([("a", 1), ("b", 1)], "index 1 is used by more than one word"),
    ([("a", 0)], "below the vocabulary's index_base 1"),
    ([("", 1)], "non-empty string"),
    ([("a\tb", 1)], "tab or newline"),
    ([("a", -3)], "non-negative integer"),
    ([("a", "1")], "non-negative integer"),
    ([], "empty"),
]


@pytest.mark.parametrize(("pairs", "message"), BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_vocabularies_are_refused_and_change_nothing(tmp_path, tiny_sqlite_path, pairs, message):
    target = tmp_path / "vocab.sqlite"
    target.write_bytes(tiny_sqlite_path.read_bytes())
    before = target.read_bytes()
    with pytest.raises(BadRequest, match=message):
        write_sqlite(target, pairs, source="bad", index_base=1)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocab.sqlite"]  # no temp file left behind


def test_duplicate_word_in_a_later_batch_is_named(tmp_path):
    pairs = [(f"w{i}", i) for i in range(1, 25_001)] + [("w7", 30_000)]
    with pytest.raises(BadRequest, match="duplicate word 'w7'"):
        write_sqlite(tmp_path / "v.sqlite", pairs, source="t", index_base=1)
    assert not (tmp_path / "v.sqlite").exists()


def test_write_replaces_atomically_and_reports_progress(tmp_path, tiny_vocab_pairs):
    target = tmp_path / "v.sqlite"
    write_sqlite(target, [("old", 1)], source="old", index_base=1)
    reader = SqliteVocabularyStore(target)
    assert reader.lookup(["old"]) == {"old": 1}
    old_info = reader.info()
    done: list[int] = []
    info = write_sqlite(target, tiny_vocab_pairs, source="new", index_base=1, progress=done.append)
    assert sum(done) == len(tiny_vocab_pairs)
    # A reader checked against the old vocabulary refuses the replaced file rather than serve other indexes.
    with pytest.raises(StoreUnavailable, match="replaced by a different vocabulary"):
        reader.lookup(["old", "idiot"])
    fresh = SqliteVocabularyStore(target)
    assert fresh.info() == info and fresh.lookup(["old", "idiot"]) == {"idiot": 3}
    # The same vocabulary written again (a new file, same checksum) is followed without a restart.
    write_sqlite(target, [("old", 1)], source="old", index_base=1)
    assert reader.lookup(["old"]) == {"old": 1} and reader.info() == old_info
    reader.close()
    fresh.close()


def test_a_file_renamed_away_is_unavailable_until_it_is_back(tmp_path):
    target = tmp_path / "v.sqlite"
    write_sqlite(target, [("word", 1)], source="t", index_base=1)
    reader = SqliteVocabularyStore(target)
    reader.info()
    target.rename(tmp_path / "away.sqlite")
    with pytest.raises(StoreUnavailable, match="is gone"):
        reader.ping()
    (tmp_path / "away.sqlite").rename(target)
    assert reader.lookup(["word"]) == {"word": 1}
    reader.close()


def test_schema_is_the_documented_one(tiny_sqlite_path: Path):
    conn = sqlite3.connect(f"file:{tiny_sqlite_path}?mode=ro", uri=True)
    sql = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
    conn.close()
    assert "WITHOUT ROWID" in sql["vocab"] and "word TEXT PRIMARY KEY" in sql["vocab"] and "idx INTEGER NOT NULL" in sql["vocab"]
    assert "meta" in sql
