"""MongoDB vocabulary: on mongomock always, and on a real server when TOXIC_TEST_MONGODB_URI names one.

No MongoDB server can be installed here (see datasets.md): the real-server
variants skip with that reason, printed in the "not run here" summary.
"""

from __future__ import annotations

import inspect
import os
import time
import uuid

import mongomock
import pymongo
import pytest
from pymongo import monitoring
from toxic_service.errors import BadRequest, StoreUnavailable, VocabularyMismatch
from toxic_service.scoring import build_scorer
from toxic_service.vocab.base import VocabularyStore
from toxic_service.vocab.checksum import vocabulary_checksum
from toxic_service.vocab.mongo import META_ID, MongoVocabularyStore, meta_collection_name, write_mongo, write_mongo_meta

REAL_URI = os.environ.get("TOXIC_TEST_MONGODB_URI")
NO_SERVER = "no MongoDB server here: set TOXIC_TEST_MONGODB_URI"


class CommandCounter(monitoring.CommandListener):
    """Counts the commands a real pymongo client sends (find, getMore, ...)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


class Backend:
    """A client plus a way to count the finds it runs: pymongo command monitoring, or mongomock's own find."""

    def __init__(self, kind: str, client, counter: CommandCounter | None, database: str) -> None:
        self.kind, self.client, self.counter, self.database = kind, client, counter, database
        self.mock_finds = 0

    def new_client(self, *args, **kwargs):
        """Another client to the same server."""
        if self.kind == "mongomock":
            return mongomock.MongoClient(_store=self.client._store)  # the same in-memory server
        return pymongo.MongoClient(REAL_URI, serverSelectionTimeoutMS=3000)

    def finds(self) -> int:
        if self.counter is not None:
            return sum(1 for name in self.counter.names if name in ("find", "getMore"))
        return self.mock_finds

    def reset(self) -> None:
        self.mock_finds = 0
        if self.counter is not None:
            self.counter.names.clear()


def _mongomock_accepts_sort(monkeypatch) -> None:
    """mongomock 4.3 predates pymongo 4.11, whose UpdateOne passes `sort=` to the bulk builder.

    The fake is taught to accept (and, as a server does for an upsert on a
    unique key, not need) that argument; our code keeps using UpdateOne.
    """
    add_update = mongomock.collection.BulkOperationBuilder.add_update
    if "sort" in inspect.signature(add_update).parameters:
        return

    def add_update_accepting_sort(self, *args, sort=None, **kwargs):
        assert sort is None
        return add_update(self, *args, **kwargs)

    monkeypatch.setattr(mongomock.collection.BulkOperationBuilder, "add_update", add_update_accepting_sort)


@pytest.fixture(params=["mongomock", "real"])
def backend(request, monkeypatch):
    database = f"toxic_test_{uuid.uuid4().hex[:8]}"
    if request.param == "mongomock":
        _mongomock_accepts_sort(monkeypatch)
        client = mongomock.MongoClient()
        b = Backend("mongomock", client, None, database)
        real_find = mongomock.collection.Collection.find

        def counting_find(self, *args, **kwargs):
            b.mock_finds += 1
            return real_find(self, *args, **kwargs)

        monkeypatch.setattr(mongomock.collection.Collection, "find", counting_find)
        yield b
        return
    if not REAL_URI:
        pytest.skip(NO_SERVER)
    counter = CommandCounter()
    client = pymongo.MongoClient(REAL_URI, serverSelectionTimeoutMS=3000, event_listeners=[counter])
    yield Backend("real", client, counter, database)
    client.drop_database(database)
    client.close()


def write(backend, pairs, **kw):
    return write_mongo(backend.client, pairs, database=backend.database, collection="vocab",
                       source=kw.pop("source", "test"), index_base=kw.pop("index_base", 1), **kw)


def open_store(backend) -> MongoVocabularyStore:
    return MongoVocabularyStore.from_uri("unused://", database=backend.database, collection="vocab", client=backend.client)


def test_write_then_lookup_and_info(backend, tiny_vocab_pairs, tiny_sqlite_path):
    from toxic_service.vocab.sqlite import SqliteVocabularyStore

    info = write(backend, tiny_vocab_pairs)
    store = open_store(backend)
    assert isinstance(store, VocabularyStore)
    assert store.lookup(["idiot", "thank", "nope", "café"]) == {"idiot": 3, "thank": 11, "café": 38}
    assert store.info() == info
    # The same pairs give the same checksum whichever store holds them.
    assert info.checksum == SqliteVocabularyStore(tiny_sqlite_path).info().checksum == vocabulary_checksum(tiny_vocab_pairs)
    assert list(store.iter_pairs()) == list(tiny_vocab_pairs)
    store.ping()


def test_one_find_per_lookup_even_for_many_words(backend):
    pairs = [(f"w{i}", i) for i in range(1, 301)]  # 150 hits: more than a default first batch (101)
    write(backend, pairs)
    store = open_store(backend)
    backend.reset()
    words = [f"w{i}" for i in range(1, 301, 2)] + [f"missing{i}" for i in range(100)]
    found = store.lookup(words)
    assert len(found) == 150 and found["w299"] == 299
    assert backend.finds() == 1  # and no getMore: the answer comes in one batch


def test_word_has_a_unique_index(backend, tiny_vocab_pairs):
    write(backend, tiny_vocab_pairs)
    indexes = backend.client[backend.database]["vocab"].index_information()
    assert any(spec["key"] == [("word", 1)] and spec.get("unique") for spec in indexes.values())


def test_write_is_idempotent_and_replaces_an_older_vocabulary(backend, tiny_vocab_pairs):
    coll = backend.client[backend.database]["vocab"]
    first = write(backend, tiny_vocab_pairs)
    ids = {d["word"]: d["_id"] for d in coll.find()}
    again = write(backend, tiny_vocab_pairs)
    assert again == first and {d["word"]: d["_id"] for d in coll.find()} == ids
    smaller = [(w, i) for w, i in tiny_vocab_pairs if w != "idiot"]
    changed = write(backend, smaller, source="smaller")
    assert changed.checksum == vocabulary_checksum(smaller) and changed.size == len(smaller)
    assert coll.count_documents({}) == len(smaller)
    assert open_store(backend).lookup(["idiot", "stupid"]) == {"stupid": 4}


@pytest.mark.parametrize(
    ("pairs", "message"),
    [([("a", 1), ("a", 2)], "duplicate word"), ([("a", 1), ("b", 1)], "index 1 is used by both"),
     ([("a", 0)], "index_base"), ([], "empty"), (([("a\nb", 1)]), "tab or newline")],
)
def test_bad_vocabularies_are_refused_before_anything_is_written(backend, pairs, message):
    with pytest.raises(BadRequest, match=message):
        write(backend, pairs)
    assert "vocab" not in backend.client[backend.database].list_collection_names()


def test_seed_style_collection_gets_metadata_without_rewriting(backend):
    # The seed's layout: 0-based gensim indexes and a vector nobody reads.
    coll = backend.client[backend.database]["glove-wiki-gigaword-50.posts"]
    coll.insert_many([{"word": w, "index": i, "vector": [0.1] * 3} for i, w in enumerate(["the", ",", ".", "of", "idiot"])])
    store = MongoVocabularyStore.from_uri("unused://", database=backend.database, collection="glove-wiki-gigaword-50.posts",
                                          client=backend.client)
    missing = store.info()
    assert missing.checksum == "missing" and "vocab import" in missing.source
    info = write_mongo_meta(backend.client, database=backend.database, collection="glove-wiki-gigaword-50.posts", source="seed")
    assert info.index_base == 0 and info.size == 5
    assert info.checksum == vocabulary_checksum([("the", 0), (",", 1), (".", 2), ("of", 3), ("idiot", 4)])
    assert store.info() == info
    meta = backend.client[backend.database][meta_collection_name("glove-wiki-gigaword-50.posts")].find_one({"_id": META_ID})
    assert meta["checksum"] == info.checksum


def test_scorer_refuses_a_mongo_store_without_metadata(backend, tiny_settings, tiny_vocab_pairs, monkeypatch):
    coll = backend.client[backend.database]["vocab"]
    coll.insert_many([{"word": w, "index": i} for w, i in tiny_vocab_pairs])
    settings = tiny_settings.replace(**{"vocab_backend": "mongodb", "mongodb_database": backend.database})
    # The store builds its client from the settings; here that client is the backend's kind (pymongo's class swapped out).
    monkeypatch.setattr("toxic_service.vocab.mongo.MongoClient", backend.new_client)
    with pytest.raises(VocabularyMismatch, match="no metadata document"):
        build_scorer(settings)
    write_mongo_meta(backend.client, database=backend.database, collection="vocab", source="now described")
    scorer = build_scorer(settings)
    assert scorer.score(["you idiot"])[0]["insult"] > 0.5


def test_down_server_is_store_unavailable_fast():
    # Port 1 on loopback: nothing listens, so server selection fails within the timeout.
    store = MongoVocabularyStore("mongodb://127.0.0.1:1/", "db", "vocab", timeout_ms=200)
    for call in (lambda: store.lookup(["a"]), store.info, store.ping):
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="did not answer"):
            call()
        # pymongo's default would wait 30 s; a worker must not hang that long.
        assert time.monotonic() - started < 5
    store.close()


def test_settings_reach_the_client(tiny_settings):
    update = {"mongodb_database": "dbx", "mongodb_collection": "colx", "mongodb_timeout_ms": 123}
    settings = tiny_settings.replace(**update)
    store = MongoVocabularyStore.from_settings(settings)
    assert (store.database, store.collection, store.timeout_ms) == ("dbx", "colx", 123)
    client = store._db().client
    assert client.options.server_selection_timeout == pytest.approx(0.123)
    store.close()


def test_read_only_user_can_serve(backend, tiny_vocab_pairs):
    if backend.kind != "real":
        pytest.skip("mongomock has no users: read-only access is checked only against a real server")
    write(backend, tiny_vocab_pairs)
    db = backend.client[backend.database]
    user, password = f"ro_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    try:
        db.command("createUser", user, pwd=password, roles=[{"role": "read", "db": backend.database}])
    except pymongo.errors.OperationFailure as exc:
        pytest.skip(f"cannot create a user on this server: {exc}")
    try:
        host, port = backend.client.address
        ro = pymongo.MongoClient(host, port, username=user, password=password, authSource=backend.database,
                                 serverSelectionTimeoutMS=3000)
        store = open_store(Backend("real", ro, None, backend.database))
        assert store.lookup(["idiot"]) == {"idiot": 3}
        assert store.info().checksum == vocabulary_checksum(tiny_vocab_pairs)
        ro.close()
    finally:
        db.command("dropUser", user)
