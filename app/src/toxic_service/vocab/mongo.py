"""The MongoDB vocabulary store: the seed's `{word, index}` documents, done right.

- one `find({"word": {"$in": words}})` per request, answered in one batch
  (no getMore round-trips), served by a unique index on `word`;
- the service only reads, so it runs as a read-only user;
- a short server-selection/socket timeout turns a down server into a fast
  StoreUnavailable (503), not a hung worker;
- the client is created lazily and again after a fork (pymongo is not fork-safe).

The vocabulary's metadata (checksum, size, index_base, source) lives in one
document `{_id: "vocabulary"}` of the collection `<collection>_meta`, written
by `write_mongo` or, for an existing seed dump, by `write_mongo_meta`.
Both take a URI (a user allowed to write) or a client, plus database= and collection=.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pymongo import ASCENDING, MongoClient, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from toxic_service.errors import BadRequest, StoreUnavailable
from toxic_service.settings import Settings
from toxic_service.vocab.base import VocabularyInfo
from toxic_service.vocab.checksum import check_pair, vocabulary_checksum
from toxic_service.vocab.meta import checked_meta, info_from_meta

META_ID = "vocabulary"
MISSING_CHECKSUM = "missing"
_PROJECTION = {"_id": 0, "word": 1, "index": 1}


def meta_collection_name(collection: str) -> str:
    return f"{collection}_meta"


def service_client(uri: str, timeout_ms: int) -> MongoClient:
    """The service's client for `uri` (TLS and credentials come in the URI), unconnected until first use.

    One timeout for server selection, connect and socket: a down server is a fast error, not a hung
    worker. Also used by the feedback store (feedback/mongo.py), which lives in the same database.
    """
    return MongoClient(
        uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms,
        appname="toxic-service",
        connect=False,
    )


class ProcessClient:
    """The client of one store: made from `uri` on first use in each process, never at import or across a fork.

    A client inherited through fork() shares sockets with the parent (pymongo is not fork-safe), so a new
    process makes its own. A `given` client (tests pass mongomock's) is used as it is and never closed here.
    Both MongoDB stores (this vocabulary store, feedback/mongo.py) hold one.
    """

    def __init__(self, uri: str, timeout_ms: int, given: Any = None) -> None:
        self.uri = uri
        self.timeout_ms = timeout_ms
        self._client = given
        self._owned = given is None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._owned and (self._client is None or self._pid != os.getpid()):
                self._client = service_client(self.uri, self.timeout_ms)
                self._pid = os.getpid()
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._owned and self._client is not None and self._pid == os.getpid():
                self._client.close()
            if self._owned:
                self._client = None


class MongoVocabularyStore:
    """Word -> index lookups from a MongoDB collection of `{word, index}` documents.

    `client` may be given (tests pass a mongomock client); otherwise one is made
    from `uri` on first use in each process.
    """

    def __init__(
        self,
        uri: str,
        database: str,
        collection: str,
        timeout_ms: int = 500,
        *,
        client: Any = None,
    ) -> None:
        self.uri = uri
        self.database = database
        self.collection = collection
        self.timeout_ms = timeout_ms
        self._client = ProcessClient(uri, timeout_ms, client)
        self._info: VocabularyInfo | None = None

    @classmethod
    def from_uri(
        cls, uri: str, *, database: str, collection: str, timeout_ms: int = 500, client: Any = None
    ) -> MongoVocabularyStore:
        return cls(uri, database, collection, timeout_ms, client=client)

    @classmethod
    def from_settings(cls, settings: Settings, *, client: Any = None) -> MongoVocabularyStore:
        return cls(
            settings.mongodb_uri.get_secret_value(),
            settings.mongodb_database,
            settings.mongodb_collection,
            settings.mongodb_timeout_ms,
            client=client,
        )

    def _db(self) -> Any:
        return self._client.get()[self.database]

    def _where(self) -> str:
        return f"MongoDB {self.database}.{self.collection}"

    def lookup(self, words: Iterable[str]) -> Mapping[str, int]:
        distinct = list(dict.fromkeys(words))
        if not distinct:
            return {}
        try:
            # batch_size: the whole answer in the first reply, so one request is one round-trip.
            cursor = self._db()[self.collection].find({"word": {"$in": distinct}}, _PROJECTION).batch_size(len(distinct))
            return {doc["word"]: int(doc["index"]) for doc in cursor if "index" in doc}
        except PyMongoError as exc:
            raise StoreUnavailable(f"{self._where()} did not answer: {exc}") from exc

    def info(self) -> VocabularyInfo:
        if self._info is not None:
            return self._info
        meta = self.meta()
        if meta is None:
            # No checksum is computed here (400k documents at every worker start);
            # the bundle check then refuses with this explanation in `source`.
            return VocabularyInfo(
                checksum=MISSING_CHECKSUM,
                size=0,
                index_base=-1,
                source=f"no metadata document in {self.database}.{meta_collection_name(self.collection)}: "
                "run `toxic-service vocab import`",
            )
        self._info = info_from_meta(meta)
        return self._info

    def meta(self) -> dict[str, Any] | None:
        """The metadata document as `read_meta` gives an SQLite file's (without `_id`), or None when there is none.

        Raises StoreUnavailable when MongoDB does not answer, VocabularyError when the document is malformed.
        """
        meta_name = meta_collection_name(self.collection)
        try:
            doc = self._db()[meta_name].find_one({"_id": META_ID})
        except PyMongoError as exc:
            raise StoreUnavailable(f"{self._where()} did not answer: {exc}") from exc
        if doc is None:
            return None
        doc = {key: value for key, value in doc.items() if key != "_id"}
        # A seed-style document written before `source` was recorded still serves.
        doc.setdefault("source", "")
        return checked_meta(doc, f"MongoDB {self.database}.{meta_name}")

    def ping(self) -> None:
        try:
            self._db().command("ping")
        except PyMongoError as exc:
            raise StoreUnavailable(f"{self._where()} did not answer: {exc}") from exc

    def iter_pairs(self) -> Iterable[tuple[str, int]]:
        """Every (word, index) in index order (export, checksum verification)."""
        try:
            cursor = self._db()[self.collection].find({}, _PROJECTION).sort("index", ASCENDING)
            for doc in cursor:
                yield doc["word"], int(doc["index"])
        except PyMongoError as exc:
            raise StoreUnavailable(f"{self._where()} did not answer: {exc}") from exc

    def close(self) -> None:
        self._client.close()


def _validated(pairs: Iterable[tuple[str, int]], index_base: int) -> dict[str, int]:
    words: dict[str, int] = {}
    owner: dict[int, str] = {}
    for word, index in pairs:
        check_pair(word, index, index_base)
        if word in words:
            raise BadRequest(f"duplicate word {word!r} in the vocabulary")
        if index in owner:
            raise BadRequest(f"index {index} is used by both {owner[index]!r} and {word!r}")
        words[word] = index
        owner[index] = word
    if not words:
        raise BadRequest("the vocabulary is empty")
    return words


def collection_checksum(collection: Any) -> tuple[str, int]:
    """(checksum, size) of what the collection holds, streamed in index order."""
    cursor = collection.find({}, _PROJECTION).sort("index", ASCENDING)
    count = 0

    def pairs() -> Iterable[tuple[str, int]]:
        nonlocal count
        for doc in cursor:
            count += 1
            yield doc["word"], doc["index"]

    try:
        checksum = vocabulary_checksum(pairs())
    except ValueError as exc:
        raise BadRequest(f"collection {collection.full_name}: {exc}") from None
    return checksum, count


def _open_target(target: Any, timeout_ms: int) -> tuple[Any, bool]:
    """(client, owned): a URI gets its own client, closed afterwards; a client is used as given."""
    if isinstance(target, str):
        return MongoClient(target, serverSelectionTimeoutMS=timeout_ms, appname="toxic-service-import"), True
    return target, False


def write_mongo_meta(
    target: Any,
    *,
    database: str,
    collection: str,
    source: str,
    index_base: int | None = None,
    timeout_ms: int = 5_000,
) -> VocabularyInfo:
    """Compute the checksum of an existing collection (e.g. a restored seed dump) and store its metadata.

    `target` is a MongoDB URI (with a user allowed to write) or a client.
    """
    client, owned = _open_target(target, timeout_ms)
    try:
        return _write_meta(client[database], collection, source=source, index_base=index_base)
    except PyMongoError as exc:
        raise StoreUnavailable(f"MongoDB {database}.{collection}: {exc}") from exc
    finally:
        if owned:
            client.close()


def _write_meta(db: Any, collection: str, *, source: str, index_base: int | None) -> VocabularyInfo:
    coll = db[collection]
    checksum, size = collection_checksum(coll)
    if size == 0:
        raise BadRequest(f"collection {coll.full_name} is empty")
    if index_base is None:
        first = coll.find_one({}, _PROJECTION, sort=[("index", ASCENDING)])
        index_base = int(first["index"])
    info = VocabularyInfo(checksum=checksum, size=size, index_base=index_base, source=source)
    db[meta_collection_name(collection)].replace_one(
        {"_id": META_ID},
        {"_id": META_ID, "checksum": checksum, "size": size, "index_base": index_base, "source": source},
        upsert=True,
    )
    return info


def write_mongo(
    target: Any,
    pairs: Iterable[tuple[str, int]],
    *,
    database: str,
    collection: str,
    source: str,
    index_base: int,
    batch_size: int = 5_000,
    progress: Callable[[int], None] | None = None,
    timeout_ms: int = 5_000,
) -> VocabularyInfo:
    """Make `database.collection` hold exactly `pairs`; idempotent (a re-run changes no document).

    `target` is a MongoDB URI (with a user allowed to write) or a client. Bad
    input (duplicates, bad words or indexes) is refused before anything is
    written. While documents change, the metadata document's checksum says
    "import in progress", so a service starting meanwhile refuses the
    half-written vocabulary instead of serving it.
    """
    wanted = _validated(pairs, index_base)
    client, owned = _open_target(target, timeout_ms)
    try:
        return _write(client[database], collection, wanted, source, index_base, batch_size, progress)
    except PyMongoError as exc:
        raise StoreUnavailable(f"MongoDB {database}.{collection}: {exc}") from exc
    finally:
        if owned:
            client.close()


def _write(
    db: Any,
    collection: str,
    wanted: dict[str, int],
    source: str,
    index_base: int,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> VocabularyInfo:
    coll = db[collection]
    meta = db[meta_collection_name(collection)]
    try:
        coll.create_index([("word", ASCENDING)], unique=True, name="word_unique")
    except (DuplicateKeyError, OperationFailure) as exc:
        raise BadRequest(
            f"collection {coll.full_name} already holds duplicate words, so no unique index can be built: {exc}"
        ) from None
    coll.create_index([("index", ASCENDING)], name="index")
    meta.update_one({"_id": META_ID}, {"$set": {"checksum": "import in progress"}}, upsert=True)
    batch: list[UpdateOne] = []
    try:
        for word, index in wanted.items():
            batch.append(UpdateOne({"word": word}, {"$set": {"index": index}}, upsert=True))
            if len(batch) >= batch_size:
                coll.bulk_write(batch, ordered=False)
                if progress:
                    progress(len(batch))
                batch = []
        if batch:
            coll.bulk_write(batch, ordered=False)
            if progress:
                progress(len(batch))
    except BulkWriteError as exc:
        raise BadRequest(f"writing {coll.full_name} failed: {exc.details.get('writeErrors', [])[:1]}") from None
    # Words of an earlier vocabulary that the new one lacks.
    stale = [doc["word"] for doc in coll.find({}, {"_id": 0, "word": 1}) if doc.get("word") not in wanted]
    for start in range(0, len(stale), batch_size):
        coll.delete_many({"word": {"$in": stale[start : start + batch_size]}})
    return _write_meta(db, collection, source=source, index_base=index_base)
