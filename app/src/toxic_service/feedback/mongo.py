"""The feedback store in MongoDB: `comments:suggestscore` suggestions in the vocabulary's database.

Used with TOXIC_VOCAB_BACKEND=mongodb when TOXIC_FEEDBACK_DB is unset
(feedback/__init__.py). Same interface, Suggestion objects and errors as the
SQLite store (store.py), so `feedback export` and `feedback stats` read either.

Where: the collection FEEDBACK_COLLECTION of TOXIC_MONGODB_DATABASE, reached
with TOXIC_MONGODB_URI (credentials and TLS in the URI) and the vocabulary
store's client settings (vocab/mongo.py: ProcessClient, service_client). The app user needs
insert and find on that one collection (roles/mongodb: toxic_feedback role).

Durability: every insert is written with `w: "majority", j: true`, so the
acknowledgement, and with it the 200, comes only after the suggestion is in
the journal of a majority (on a single server: its own journal), as the
SQLite store commits (fsyncs) before answering.

One document per suggestion, `_id` 1, 2, 3, ... in insertion order:
    schemaVersion, time (UTC, ISO 8601), keyName, communityId, sessionId,
    clientToken, text (null with doNotStore), textType, languages,
    attributeScores: [{attribute, summary (null: spans only), spans: [{begin, end, value}]}],
    bytes (this document's BSON size without the two counters), totalBytes (running sum)
The `_id` is the previous one + 1, so a reader sorts by it for insertion order
and `feedback export` writes the same `feedback-<id>` rows as from SQLite. Two
workers taking the same `_id` at once are told apart by the unique `_id`
index: the loser reads the new last document and tries again. This needs
only insert and find (no counter document to update).

Size cap: a running count of bytes, not collStats. `storageSize` is the
compressed file size and moves only at WiredTiger checkpoints (every 60 s),
so a cap checked against it overshoots by whatever arrived meanwhile, and
collStats is one more privilege and round-trip per write. Each document
carries `totalBytes`, the sum of `bytes` up to and including it; an insert
that would take it past TOXIC_FEEDBACK_MAX_BYTES is refused (FeedbackStoreFull)
before anything is written. Since the next `_id` and the total are read from
the same last document, the unique `_id` makes the count exact across workers.
The cap counts document data (as collStats `size` does), not indexes or
on-disk compression.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import bson
from pymongo import ASCENDING, DESCENDING, WriteConcern
from pymongo.errors import DuplicateKeyError, PyMongoError

from toxic_service.feedback.store import (
    AttributeSuggestion,
    FeedbackStoreFull,
    FeedbackStoreMissing,
    FeedbackUnavailable,
    SpanSuggestion,
    Suggestion,
)
from toxic_service.settings import Settings
from toxic_service.vocab.mongo import ProcessClient

# The collection's name; roles/mongodb/files/mongodb-users.js grants on it (a test checks they agree).
FEEDBACK_COLLECTION = "feedback"
SCHEMA_VERSION = 1
# Acknowledged == in the journal of a majority: what the 200 promises.
DURABLE = WriteConcern(w="majority", j=True)
# Workers racing for the next _id: each lost race means another suggestion landed, so a few suffice.
MAX_ATTEMPTS = 20
_LAST = {"_id": 1, "totalBytes": 1}


class MongoFeedbackStore:
    """Suggestions in one MongoDB collection. Safe across processes (a client per process) and threads (a lock).

    `client` may be given (tests pass a mongomock client); otherwise one is made from `uri` on first use in
    each process, never at import and never across a fork.
    """

    def __init__(
        self,
        uri: str,
        database: str,
        max_bytes: int,
        timeout_ms: int = 500,
        *,
        collection: str = FEEDBACK_COLLECTION,
        client: Any = None,
    ) -> None:
        self.uri = uri
        self.database = database
        self.collection = collection
        self.max_bytes = max_bytes
        self.timeout_ms = timeout_ms
        self._client = ProcessClient(uri, timeout_ms, client)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, client: Any = None) -> MongoFeedbackStore:
        return cls(
            settings.mongodb_uri.get_secret_value(),
            settings.mongodb_database,
            settings.feedback_max_bytes,
            settings.mongodb_timeout_ms,
            client=client,
        )

    @property
    def where(self) -> str:
        """Where the suggestions are, for messages (no URI: it may hold a password)."""
        return f"MongoDB {self.database}.{self.collection}"

    def _coll(self) -> Any:
        return self._client.get()[self.database].get_collection(self.collection, write_concern=DURABLE)

    def _last(self, coll: Any) -> tuple[int, int]:
        """(_id, totalBytes) of the newest suggestion; (0, 0) when there is none."""
        doc = coll.find_one({}, _LAST, sort=[("_id", DESCENDING)])
        if doc is None:
            return 0, 0
        if not isinstance(doc["_id"], int) or isinstance(doc["_id"], bool) or not isinstance(doc.get("totalBytes"), int):
            raise FeedbackUnavailable(
                f"{self.where}: not a feedback collection (document {doc['_id']!r} has no integer _id and totalBytes)"
            )
        return doc["_id"], doc["totalBytes"]

    def _full_message(self, used: int) -> str:
        return (
            f"the feedback store is full (cap TOXIC_FEEDBACK_MAX_BYTES={self.max_bytes} bytes, {used} used); "
            f"export it (toxic-service feedback export) and have an administrator drop {self.database}.{self.collection}, "
            "or raise the cap"
        )

    def close(self) -> None:
        self._client.close()

    # --- writing -------------------------------------------------------------------------------------

    def add(self, suggestion: Suggestion) -> int:
        """Store one suggestion, journaled on a majority before this returns; its id.

        FeedbackStoreFull when it would take the store past the cap, FeedbackUnavailable when MongoDB
        does not answer or refuses; in both cases nothing of the suggestion is stored.
        """
        body = _document(suggestion)
        size = len(bson.encode(body))
        with self._lock:
            try:
                coll = self._coll()
                for _ in range(MAX_ATTEMPTS):
                    last_id, used = self._last(coll)
                    if used + size > self.max_bytes:
                        raise FeedbackStoreFull(self._full_message(used))
                    try:
                        coll.insert_one({"_id": last_id + 1, **body, "bytes": size, "totalBytes": used + size})
                    except DuplicateKeyError:
                        continue  # another worker stored one first: read the new last document
                    return last_id + 1
            except PyMongoError as exc:
                raise FeedbackUnavailable(f"{self.where} did not take the suggestion: {exc}") from exc
        raise FeedbackUnavailable(f"{self.where}: {MAX_ATTEMPTS} concurrent writers won the next _id in a row")

    # --- reading -------------------------------------------------------------------------------------

    def suggestions(self) -> Iterator[Suggestion]:
        """Every stored suggestion, oldest first (FeedbackStoreMissing when there is none)."""
        with self._lock:
            try:
                docs = list(self._coll().find({}).sort("_id", ASCENDING))
            except PyMongoError as exc:
                raise FeedbackUnavailable(f"{self.where} did not answer: {exc}") from exc
        if not docs:
            raise FeedbackStoreMissing(f"{self.where}: no suggestion stored yet")
        for doc in docs:
            yield self._suggestion(doc)

    def _suggestion(self, doc: dict[str, Any]) -> Suggestion:
        if doc.get("schemaVersion") != SCHEMA_VERSION:
            raise FeedbackUnavailable(
                f"{self.where}: document {doc['_id']!r} has feedback schema version {doc.get('schemaVersion')!r}; "
                f"this toxic-service reads version {SCHEMA_VERSION}"
            )
        return Suggestion(
            text=doc["text"],
            text_type=doc["textType"],
            attributes=tuple(
                AttributeSuggestion(
                    item["attribute"],
                    item["summary"],
                    tuple(SpanSuggestion(span["begin"], span["end"], span["value"]) for span in item["spans"]),
                )
                for item in doc["attributeScores"]
            ),
            key_name=doc["keyName"],
            community_id=doc["communityId"],
            session_id=doc["sessionId"],
            client_token=doc["clientToken"],
            languages=tuple(doc["languages"]),
            created_at=doc["time"],
            id=doc["_id"],
        )

    def size_bytes(self) -> int:
        """The bytes stored so far (the figure the cap limits)."""
        with self._lock:
            try:
                return self._last(self._coll())[1]
            except PyMongoError as exc:
                raise FeedbackUnavailable(f"{self.where} did not answer: {exc}") from exc


def _document(suggestion: Suggestion) -> dict[str, Any]:
    """The suggestion as stored, without _id and the size counters (a list keeps the attributes' order,
    and attribute names never become field names)."""
    return {
        "schemaVersion": SCHEMA_VERSION,
        "time": suggestion.created_at,
        "keyName": suggestion.key_name,
        "communityId": suggestion.community_id,
        "sessionId": suggestion.session_id,
        "clientToken": suggestion.client_token,
        "text": suggestion.text,
        "textType": suggestion.text_type,
        "languages": list(suggestion.languages),
        "attributeScores": [
            {
                "attribute": item.attribute,
                "summary": item.summary,
                "spans": [{"begin": span.begin, "end": span.end, "value": span.value} for span in item.spans],
            }
            for item in suggestion.attributes
        ],
    }
