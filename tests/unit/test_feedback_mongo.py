"""The MongoDB feedback store: on mongomock always, and on a real server when TOXIC_TEST_MONGODB_URI names one.

No MongoDB server can be installed here (see datasets.md): the real-server
variants skip with that reason, printed in the "not run here" summary. mongomock
is the stand-in for the server only (our code runs unchanged against it); what
only a server shows (the write concern on the wire, privileges) is checked in
the real-server variants.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import bson
import mongomock
import pymongo
import pytest
from pymongo import monitoring
from toxic_service.api import create_app
from toxic_service.feedback import feedback_store
from toxic_service.feedback.export import export_csv
from toxic_service.feedback.mongo import FEEDBACK_COLLECTION, MongoFeedbackStore
from toxic_service.feedback.store import (
    AttributeSuggestion,
    FeedbackStore,
    FeedbackStoreFull,
    FeedbackStoreMissing,
    FeedbackUnavailable,
    SpanSuggestion,
    Suggestion,
)
from toxic_service.perspective.suggest import suggest_score
from toxic_service.vocab.mongo import write_mongo_meta

REAL_URI = os.environ.get("TOXIC_TEST_MONGODB_URI")
NO_SERVER = "no MongoDB server here: set TOXIC_TEST_MONGODB_URI"
SUGGEST = "/v1alpha1/comments:suggestscore"


class InsertListener(monitoring.CommandListener):
    """The insert commands a real pymongo client sends (to read their writeConcern)."""

    def __init__(self) -> None:
        self.inserts: list[dict] = []

    def started(self, event) -> None:
        if event.command_name == "insert":
            self.inserts.append(dict(event.command))

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


class Backend:
    def __init__(self, kind: str, client, database: str, listener: InsertListener | None = None) -> None:
        self.kind, self.client, self.database, self.listener = kind, client, database, listener

    def new_client(self, *args, **kwargs):
        """Another client to the same server (what the service makes from its URI)."""
        if self.kind == "mongomock":
            return mongomock.MongoClient(_store=self.client._store)  # the same in-memory server
        return pymongo.MongoClient(REAL_URI, serverSelectionTimeoutMS=3000)

    def store(self, max_bytes: int = 1 << 20) -> MongoFeedbackStore:
        return MongoFeedbackStore("unused://", self.database, max_bytes, client=self.client)

    def docs(self) -> list[dict]:
        return list(self.client[self.database][FEEDBACK_COLLECTION].find().sort("_id", 1))


@pytest.fixture(params=["mongomock", "real"])
def backend(request):
    database = f"toxic_test_{uuid.uuid4().hex[:8]}"
    if request.param == "mongomock":
        yield Backend("mongomock", mongomock.MongoClient(), database)
        return
    if not REAL_URI:
        pytest.skip(NO_SERVER)
    listener = InsertListener()
    client = pymongo.MongoClient(REAL_URI, serverSelectionTimeoutMS=3000, event_listeners=[listener])
    yield Backend("real", client, database, listener)
    client.drop_database(database)
    client.close()


def _suggestions() -> list[Suggestion]:
    return [
        Suggestion(text="<p>you <b>idiot</b></p>", text_type="HTML", key_name="forum", community_id="c1",
                   session_id="s1", client_token="t1", languages=("en",), attributes=(
                       AttributeSuggestion("TOXICITY", 0.5),
                       AttributeSuggestion("INSULT", None, (SpanSuggestion(9, 14, 0.8), SpanSuggestion(0, 3, 0.1))))),
        Suggestion(text="thanks 😀", text_type="PLAIN_TEXT", community_id="c2", attributes=(
            AttributeSuggestion("TOXICITY", 0.49), AttributeSuggestion("INSULT", 0.0))),
        Suggestion(text=None, text_type="PLAIN_TEXT", attributes=(AttributeSuggestion("TOXICITY", 1.0),)),
        Suggestion(text="only toxicity", text_type="PLAIN_TEXT", attributes=(AttributeSuggestion("TOXICITY", 1.0),)),
    ]


def _big(i: int) -> Suggestion:
    return Suggestion(text="x" * 500 + str(i), text_type="PLAIN_TEXT", attributes=(AttributeSuggestion("TOXICITY", 1.0),))


# --- the store -----------------------------------------------------------------------------------------------


def test_round_trip_gives_what_the_sqlite_store_gives_and_the_same_export(backend, tmp_path):
    mongo, sqlite = backend.store(), FeedbackStore(tmp_path / "f.sqlite", 1 << 20)
    for suggestion in _suggestions():
        assert mongo.add(suggestion) == sqlite.add(suggestion)
    from_mongo, from_sqlite = list(mongo.suggestions()), list(sqlite.suggestions())
    assert from_mongo == from_sqlite  # every field: ids, times, key, ids of the client, scores, spans, text
    assert [s.id for s in from_mongo] == [1, 2, 3, 4]  # insertion order
    mapping = {"TOXICITY": "toxic", "INSULT": "insult"}
    export_csv(from_mongo, mapping, tmp_path / "mongo.csv")
    export_csv(from_sqlite, mapping, tmp_path / "sqlite.csv")
    assert (tmp_path / "mongo.csv").read_text() == (tmp_path / "sqlite.csv").read_text()
    assert (tmp_path / "mongo.csv").read_text().splitlines()[1] == "feedback-1,you idiot,1,1"


def test_one_document_per_suggestion_in_the_documented_shape(backend):
    backend.store().add(_suggestions()[0])
    [doc] = backend.docs()
    assert doc == {
        "_id": 1, "schemaVersion": 1, "time": doc["time"], "keyName": "forum", "communityId": "c1", "sessionId": "s1",
        "clientToken": "t1", "text": "<p>you <b>idiot</b></p>", "textType": "HTML", "languages": ["en"],
        "attributeScores": [
            {"attribute": "TOXICITY", "summary": 0.5, "spans": []},
            {"attribute": "INSULT", "summary": None,
             "spans": [{"begin": 9, "end": 14, "value": 0.8}, {"begin": 0, "end": 3, "value": 0.1}]},
        ],
        "bytes": doc["bytes"], "totalBytes": doc["bytes"],
    }
    assert doc["time"].endswith("Z") and doc["bytes"] > 100


def test_writes_ask_for_majority_and_the_journal(backend):
    store = backend.store()
    store.add(_suggestions()[1])
    with store._lock:
        assert store._coll().write_concern.document == {"w": "majority", "j": True}
    if backend.kind == "real":  # what the server is actually asked
        [insert] = backend.listener.inserts
        assert insert["writeConcern"] == {"w": "majority", "j": True}


def test_a_full_store_refuses_whole_suggestions_and_keeps_the_rest(backend):
    store = backend.store(max_bytes=5_000)
    stored = 0
    with pytest.raises(FeedbackStoreFull, match=r"TOXIC_FEEDBACK_MAX_BYTES=5000 bytes.*feedback export"):
        for i in range(100):
            store.add(_big(i))
            stored += 1
    assert 0 < stored < 100
    docs = backend.docs()
    assert [d["_id"] for d in docs] == list(range(1, stored + 1))  # nothing of the refused one
    assert store.size_bytes() == docs[-1]["totalBytes"] == sum(d["bytes"] for d in docs) <= 5_000
    assert not any(d["text"].endswith(str(stored)) for d in docs)
    with pytest.raises(FeedbackStoreFull):  # still full for the next one
        store.add(_big(1000))
    assert len(list(store.suggestions())) == stored  # and readable, for the export that clears it


def test_do_not_store_keeps_the_scores_and_drops_the_text(backend, tiny_settings, monkeypatch):
    monkeypatch.setattr("toxic_service.vocab.mongo.MongoClient", backend.new_client)
    settings = tiny_settings.replace(vocab_backend="mongodb", mongodb_database=backend.database)
    secret = "my very private comment"
    body = {"comment": {"text": secret}, "doNotStore": True, "attributeScores": {"TOXICITY": {"summaryScore": {"value": 0}}}}
    assert suggest_score(body, "forum", settings) == {"detectedLanguages": ["en"]}
    [doc] = backend.docs()
    assert doc["text"] is None and doc["keyName"] == "forum"
    assert secret.encode() not in bson.encode(doc)
    [stored] = list(feedback_store(settings).suggestions())
    assert stored.text is None and stored.attributes == (AttributeSuggestion("TOXICITY", 0.0),)


def test_a_writer_that_loses_the_race_for_an_id_stores_under_the_next_one(backend, monkeypatch):
    # Another worker's suggestion lands between this store reading the last document and inserting after it.
    mine, other = backend.store(), MongoFeedbackStore("unused://", backend.database, 1 << 20, client=backend.new_client())
    collection_class = type(backend.client[backend.database][FEEDBACK_COLLECTION])
    find_one = collection_class.find_one
    raced = []

    def find_one_then_the_other_worker_writes(self, *args, **kwargs):
        doc = find_one(self, *args, **kwargs)
        if not raced:
            raced.append(True)
            other.add(_big(1))
        return doc

    monkeypatch.setattr(collection_class, "find_one", find_one_then_the_other_worker_writes)
    assert mine.add(_big(2)) == 2  # its first try (_id 1) hit the other's document: read again, take 2
    docs = backend.docs()
    assert [(d["_id"], d["text"][-1]) for d in docs] == [(1, "1"), (2, "2")]
    assert docs[1]["totalBytes"] == docs[0]["bytes"] + docs[1]["bytes"]  # counted on top of the other's


def test_concurrent_writers_get_distinct_ids_and_an_exact_byte_count(backend):
    if backend.kind != "real":
        pytest.skip("mongomock is not thread-safe (two racing inserts of one _id can both land): real server only")
    # Two stores (two workers) on the same collection, two threads each: the unique _id settles every race.
    stores = [backend.store(), MongoFeedbackStore("unused://", backend.database, 1 << 20, client=backend.new_client())]
    errors: list[BaseException] = []

    def write(store, start):
        try:
            for i in range(start, start + 15):
                store.add(_big(i))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(stores[n % 2], n * 100)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    docs = backend.docs()
    assert [d["_id"] for d in docs] == list(range(1, 61))
    running = 0
    for doc in docs:
        running += doc["bytes"]
        assert doc["totalBytes"] == running


def test_an_empty_collection_is_missing_for_readers(backend):
    store = backend.store()
    with pytest.raises(FeedbackStoreMissing, match=f"{backend.database}.{FEEDBACK_COLLECTION}: no suggestion stored yet"):
        list(store.suggestions())
    assert store.size_bytes() == 0


def test_a_foreign_document_is_refused_clearly(backend):
    backend.client[backend.database][FEEDBACK_COLLECTION].insert_one({"_id": 7, "something": "else"})
    with pytest.raises(FeedbackUnavailable, match="not a feedback collection"):
        backend.store().add(_big(0))
    backend.client[backend.database][FEEDBACK_COLLECTION].update_one({"_id": 7}, {"$set": {"totalBytes": 10}})
    with pytest.raises(FeedbackUnavailable, match="schema version None"):
        list(backend.store().suggestions())


def test_an_unreachable_server_is_unavailable_fast():
    # Port 1 on loopback: nothing listens, so server selection fails within the timeout.
    store = MongoFeedbackStore("mongodb://127.0.0.1:1/", "db", 1 << 20, timeout_ms=200)
    for call in (lambda: store.add(_big(0)), lambda: list(store.suggestions()), store.size_bytes):
        started = time.monotonic()
        with pytest.raises(FeedbackUnavailable, match="MongoDB db.feedback did not"):
            call()
        assert time.monotonic() - started < 5  # pymongo's default would wait 30 s
    store.close()


def test_the_backend_and_feedback_db_choose_the_store(tiny_settings, tmp_path):
    mongo = tiny_settings.replace(vocab_backend="mongodb", mongodb_database="fbdb", mongodb_timeout_ms=321,
                                  feedback_max_bytes=70_000)
    store = feedback_store(mongo)
    assert isinstance(store, MongoFeedbackStore) and feedback_store(mongo) is store  # one per process
    assert (store.database, store.collection, store.max_bytes, store.timeout_ms) == ("fbdb", "feedback", 70_000, 321)
    explicit = feedback_store(mongo.replace(feedback_db=tmp_path / "f.sqlite"))
    assert isinstance(explicit, FeedbackStore) and explicit.path == tmp_path / "f.sqlite"
    assert isinstance(feedback_store(tiny_settings.replace(feedback_db=tmp_path / "g.sqlite")), FeedbackStore)


# --- comments:suggestscore over HTTP with vocab_backend=mongodb --------------------------------------------


@pytest.fixture()
def mongo_app(backend, tiny_settings, tiny_vocab_pairs, monkeypatch):
    # The service's clients (vocabulary and feedback) are made from its URI; here they reach the backend's server.
    monkeypatch.setattr("toxic_service.vocab.mongo.MongoClient", backend.new_client)
    # The vocabulary as a seed dump holds it, then its metadata (write_mongo's bulk upserts need a newer mongomock).
    backend.client[backend.database]["vocab"].insert_many([{"word": w, "index": i} for w, i in tiny_vocab_pairs])
    write_mongo_meta(backend.client, database=backend.database, collection="vocab", source="test")
    settings = tiny_settings.replace(vocab_backend="mongodb", mongodb_database=backend.database, feedback_max_bytes=65_536)
    return create_app(settings).test_client()


def _body(text: str = "you are an idiot") -> dict:
    return {"comment": {"text": text}, "communityId": "forum", "sessionId": "s1", "clientToken": "tok",
            "attributeScores": {"INSULT": {"summaryScore": {"value": 1},
                                           "spanScores": [{"begin": 8, "end": 16, "score": {"value": 1}}]}}}


def test_suggestscore_through_the_app_is_stored_in_mongodb(mongo_app, backend):
    # Scoring reads the MongoDB vocabulary; the suggestion goes to the same database.
    analyzed = mongo_app.post("/v1alpha1/comments:analyze", json={"comment": {"text": "you idiot"},
                                                                  "requestedAttributes": {"INSULT": {}}})
    assert analyzed.status_code == 200, analyzed.data
    response = mongo_app.post(SUGGEST, json=_body())
    assert (response.status_code, response.get_json()) == (200, {"clientToken": "tok", "detectedLanguages": ["en"]})
    [doc] = backend.docs()
    assert (doc["text"], doc["communityId"], doc["sessionId"], doc["clientToken"]) == ("you are an idiot", "forum", "s1", "tok")
    assert doc["attributeScores"] == [{"attribute": "INSULT", "summary": 1.0, "spans": [{"begin": 8, "end": 16, "value": 1.0}]}]


def test_a_full_mongodb_store_answers_resource_exhausted_and_keeps_serving(mongo_app, backend):
    statuses = [mongo_app.post(SUGGEST, json=_body("x" * 9000 + str(i))).status_code for i in range(12)]
    assert 200 in statuses and statuses[-1] == 429, statuses
    assert len(backend.docs()) == statuses.count(200)
    assert mongo_app.get("/readyz").status_code == 200


# --- the toxic_service role's environment file ---------------------------------------------------------------


def test_the_role_leaves_feedback_db_unset_with_the_mongodb_backend(tmp_path):
    from test_feedback_role import _values, render

    mongo = render(tmp_path, toxic_root="/srv/toxic-service", toxic_vocab_backend="mongodb",
                   toxic_mongodb_uri="mongodb://toxic_app:pw@127.0.0.1:27017/?authSource=admin")["toxic.env"]
    assert _values(mongo, "TOXIC_VOCAB_BACKEND") == ["mongodb"]
    assert _values(mongo, "TOXIC_FEEDBACK_DB") == []  # so feedback_store() picks the MongoDB store
    assert _values(mongo, "TOXIC_FEEDBACK_MAX_BYTES") == ["268435456"]  # the cap holds there too


def test_insert_and_find_on_the_feedback_collection_are_all_the_store_needs(backend):
    if backend.kind != "real":
        pytest.skip("mongomock has no users or roles: the store's privileges are checked only against a real server")
    db = backend.client[backend.database]
    role, user, password = f"fb_{uuid.uuid4().hex[:6]}", f"app_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    # What roles/mongodb/files/mongodb-users.js grants (toxic_feedback), beside read on the vocabulary.
    privileges = [{"resource": {"db": backend.database, "collection": FEEDBACK_COLLECTION}, "actions": ["find", "insert"]}]
    try:
        db.command("createRole", role, privileges=privileges, roles=[])
        db.command("createUser", user, pwd=password, roles=[{"role": "read", "db": backend.database}, role])
    except pymongo.errors.OperationFailure as exc:
        pytest.skip(f"cannot create a role and a user on this server: {exc}")
    try:
        host, port = backend.client.address
        app = pymongo.MongoClient(host, port, username=user, password=password, authSource=backend.database,
                                  serverSelectionTimeoutMS=3000)
        store = MongoFeedbackStore("unused://", backend.database, 1 << 20, client=app)
        assert [store.add(s) for s in _suggestions()] == [1, 2, 3, 4]  # the first insert creates the collection
        assert len(list(store.suggestions())) == 4 and store.size_bytes() > 0
        with pytest.raises(pymongo.errors.OperationFailure, match="not authorized"):
            app[backend.database][FEEDBACK_COLLECTION].update_one({"_id": 1}, {"$set": {"text": "changed"}})
        with pytest.raises(pymongo.errors.OperationFailure, match="not authorized"):
            app[backend.database]["vocab"].insert_one({"word": "x", "index": 1})
        app.close()
    finally:
        db.command("dropUser", user)
        db.command("dropRole", role)


# --- toxic-service feedback stats|export with the MongoDB store ----------------------------------------------


def test_feedback_commands_read_the_mongodb_store_and_name_it(backend, tiny_settings, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from toxic_service.cli import main

    monkeypatch.setattr("toxic_service.vocab.mongo.MongoClient", backend.new_client)
    for name in [k for k in os.environ if k.startswith("TOXIC_")]:
        monkeypatch.delenv(name)
    env = {"TOXIC_VOCAB_BACKEND": "mongodb", "TOXIC_MONGODB_DATABASE": backend.database,
           "TOXIC_BUNDLE": str(tiny_settings.bundle_dir), "TOXIC_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    empty = runner.invoke(main, ["feedback", "export", "--out", str(tmp_path / "none.csv")], env=env)
    assert empty.exit_code == 1 and f"MongoDB {backend.database}.feedback: no suggestion stored yet" in empty.output
    store = backend.store()
    for suggestion in _suggestions():
        store.add(suggestion)
    stats = runner.invoke(main, ["feedback", "stats", "--no-model"], env=env)
    assert stats.exit_code == 0, stats.output
    assert f"4 suggestions in MongoDB {backend.database}.feedback (1 without text)" in stats.output
    exported = runner.invoke(main, ["feedback", "export", "--out", str(tmp_path / "fb.csv"), "--attribute", "TOXICITY"], env=env)
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "fb.csv").read_text().splitlines() == [
        "id,comment_text,toxic", "feedback-1,you idiot,1", "feedback-2,thanks 😀,0", "feedback-4,only toxicity,1"]
