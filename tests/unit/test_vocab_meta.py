"""One reader of a vocabulary's metadata (vocab/meta.py) and `toxic-service vocab info`, its CLI."""

from __future__ import annotations

import json
import sqlite3

import mongomock
import pytest
from click.testing import CliRunner
from toxic_service.cli import main as cli
from toxic_service.errors import StoreUnavailable, VocabularyError
from toxic_service.vocab import mongo
from toxic_service.vocab.meta import REQUIRED_KEYS, read_meta
from toxic_service.vocab.mongo import META_ID, MongoVocabularyStore, write_mongo_meta
from toxic_service.vocab.sqlite import SqliteVocabularyStore, write_sqlite

PAIRS = [("the", 1), ("you", 2), ("idiot", 3)]


@pytest.fixture()
def vocab_file(tmp_path):
    path = tmp_path / "vocab.sqlite"
    write_sqlite(path, PAIRS, source="three words", index_base=1)
    return path


def test_read_meta_gives_what_the_writer_recorded_with_integers_as_integers(vocab_file):
    info = SqliteVocabularyStore(vocab_file).info()
    meta = read_meta(vocab_file)
    assert meta == {"checksum": info.checksum, "size": 3, "source": "three words", "index_base": 1}
    assert set(REQUIRED_KEYS) == set(meta)


def test_read_meta_keeps_extra_keys(vocab_file):
    with sqlite3.connect(vocab_file) as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES ('built_by', 'a later version')")
    assert read_meta(vocab_file)["built_by"] == "a later version"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: None, "does not exist"),
        (lambda path: path.write_bytes(b"word\t1\n" * 200), "not a readable SQLite vocabulary"),
        (lambda path: sqlite3.connect(path).execute("CREATE TABLE vocab(word TEXT, idx INTEGER)"), "has no meta table"),
        (
            lambda path: sqlite3.connect(path).executescript(
                "CREATE TABLE meta(key TEXT, value TEXT); INSERT INTO meta VALUES ('checksum', 'sha256:x');"
            ),
            "lacks size, source, index_base",
        ),
        (
            lambda path: sqlite3.connect(path).executescript(
                "CREATE TABLE meta(key TEXT, value TEXT); INSERT INTO meta VALUES ('checksum', 'c'), ('size', 'many'),"
                " ('source', 's'), ('index_base', '1');"
            ),
            "size is 'many', not an integer",
        ),
    ],
    ids=["missing", "not-sqlite", "no-meta-table", "lacks-keys", "bad-integer"],
)
def test_a_file_that_is_no_vocabulary_is_a_vocabulary_error_naming_it(tmp_path, make, message):
    path = tmp_path / "odd.sqlite"
    make(path)
    with pytest.raises(VocabularyError, match=message) as err:
        read_meta(path)
    assert str(path) in str(err.value)
    # The serving side treats it like a store that is down: 503 and a retry, never a traceback.
    assert isinstance(err.value, StoreUnavailable)


def test_the_store_reads_its_metadata_through_read_meta(tmp_path):
    path = tmp_path / "v.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE vocab(word TEXT PRIMARY KEY, idx INTEGER)").connection.commit()
    store = SqliteVocabularyStore(path)
    with pytest.raises(VocabularyError, match="has no meta table"):
        store.info()
    store.close()


def invoke(*args, env=None):
    return CliRunner().invoke(cli, ["vocab", "info", *args], env=env, catch_exceptions=False)


def test_vocab_info_json_is_one_object_with_location_and_meta(vocab_file):
    result = invoke(str(vocab_file), "--json")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc == {
        "backend": "sqlite",
        "path": str(vocab_file),
        "database": None,
        "collection": None,
        **read_meta(vocab_file),
    }
    assert list(doc)[:4] == ["backend", "path", "database", "collection"]


def test_vocab_info_defaults_to_the_configured_file_and_prints_lines(vocab_file, tmp_path):
    result = invoke(env={"TOXIC_SQLITE_PATH": str(vocab_file), "TOXIC_VOCAB_BACKEND": "sqlite"})
    assert result.exit_code == 0, result.output
    assert "size        3\n" in result.stdout and f"path        {vocab_file}\n" in result.stdout
    assert "database" not in result.stdout  # None fields are left out of the text form


def test_vocab_info_on_a_file_without_meta_fails_with_one_line_naming_it(tmp_path):
    path = tmp_path / "bare.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE vocab(word TEXT)").connection.commit()
    result = invoke(str(path), "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"error: vocabulary file {path} has no meta table (not written by `toxic-service vocab import`)\n"


def test_vocab_info_refuses_a_path_with_the_mongodb_backend(vocab_file):
    result = invoke(str(vocab_file), "--backend", "mongodb")
    assert result.exit_code == 2 and "not both" in result.stderr


@pytest.fixture()
def mongo_server(monkeypatch):
    """One in-memory MongoDB server that every client the app makes connects to (mongomock, not our code)."""
    server = mongomock.MongoClient()
    monkeypatch.setattr(mongo, "MongoClient", lambda *args, **kwargs: mongomock.MongoClient(_store=server._store))
    return server


def test_vocab_info_reads_the_mongo_meta_document_as_the_store_does(mongo_server):
    # write_mongo_meta, not write_mongo: mongomock's bulk writes lag pymongo's (see test_vocab_mongo.py).
    mongo_server["db"]["words"].insert_many([{"word": word, "index": index} for word, index in PAIRS])
    info = write_mongo_meta(mongo_server, database="db", collection="words", source="mongo words", index_base=1)
    store = MongoVocabularyStore.from_uri("unused://", database="db", collection="words", client=mongo_server)
    assert store.info() == info
    env = {"TOXIC_VOCAB_BACKEND": "mongodb", "TOXIC_MONGODB_DATABASE": "db", "TOXIC_MONGODB_COLLECTION": "words"}
    result = invoke("--json", env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "backend": "mongodb",
        "path": None,
        "database": "db",
        "collection": "words",
        "checksum": info.checksum,
        "size": 3,
        "source": "mongo words",
        "index_base": 1,
    }
    assert store.meta() == {key: value for key, value in json.loads(result.stdout).items() if key in REQUIRED_KEYS}


def test_vocab_info_without_a_mongo_meta_document_names_the_collection(mongo_server):
    mongo_server["db"]["words"].insert_one({"word": "the", "index": 1})
    env = {"TOXIC_VOCAB_BACKEND": "mongodb", "TOXIC_MONGODB_DATABASE": "db", "TOXIC_MONGODB_COLLECTION": "words"}
    result = invoke("--json", env=env)
    assert result.exit_code == 1 and "no metadata document in db.words_meta" in result.stderr
    mongo_server["db"]["words_meta"].insert_one({"_id": META_ID, "checksum": "c", "size": "x", "index_base": 0})
    result = invoke("--json", env=env)
    assert result.exit_code == 1 and "MongoDB db.words_meta: metadata size is 'x', not an integer" in result.stderr
