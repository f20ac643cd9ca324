"""A vocabulary store outage answers a 503 that says only that: no address, database, collection or driver text.

pymongo's ServerSelectionTimeoutError names the server's host:port and prints its whole topology
description; the client must see none of that (it maps the deployment), the service log must keep it.
Two outages, through the Flask app with the MongoDB backend:
- down from the start: a real pymongo client to a closed loopback port (the scorer never builds: not_ready);
- down while serving: the store runs on mongomock, then every query raises the error a real pymongo
  client raised against that closed port (store_unavailable from the lookup and from /readyz's ping).
"""

from __future__ import annotations

import logging
import socket

import mongomock
import pymongo
import pytest
from pymongo.errors import PyMongoError
from toxic_service.api import create_app
from toxic_service.errors import ERRORS
from toxic_service.vocab.mongo import write_mongo_meta

DATABASE = "toxdb_internal_name"
COLLECTION = "wordcoll_internal_name"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: nothing listens there


@pytest.fixture(scope="module")
def down_uri() -> str:
    return f"mongodb://127.0.0.1:{_closed_port()}/"


@pytest.fixture(scope="module")
def driver_error(down_uri) -> PyMongoError:
    """What pymongo itself raises when the server is down, host:port and topology description included."""
    client = pymongo.MongoClient(down_uri, serverSelectionTimeoutMS=200, connectTimeoutMS=200)
    try:
        client[DATABASE][COLLECTION].find_one({})
    except PyMongoError as exc:
        error = exc
    else:
        pytest.fail(f"something answers on {down_uri}")
    finally:
        client.close()
    assert "Topology" in str(error) and down_uri.split("//")[1].rstrip("/") in str(error), str(error)
    return error


def assert_says_only_unavailable(response, code: str, down_uri: str) -> None:
    text = response.get_data(as_text=True)
    assert response.status_code == 503, text
    body = response.get_json()
    assert body == {"error": {"code": code, "message": ERRORS[code].message}}, text
    host_port = down_uri.split("//")[1].rstrip("/")
    for internal in (host_port, host_port.split(":")[1], "127.0.0.1", DATABASE, COLLECTION, "Topology", "mongodb"):
        assert internal.lower() not in text.lower(), f"{internal!r} in the public body: {text}"


class Collected(logging.Handler):
    """The service's own log records (its logger does not propagate to the root, so caplog misses them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(f"{r.getMessage()} {getattr(r, 'detail', '')}" for r in self.records)


@pytest.fixture()
def service_log():
    handler = Collected()
    logger = logging.getLogger("toxic_service")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _mongo_settings(tiny_settings, uri: str):
    return tiny_settings.replace(
        vocab_backend="mongodb", mongodb_uri=uri, mongodb_database=DATABASE, mongodb_collection=COLLECTION,
        mongodb_timeout_ms=200,
    )


def test_store_down_from_the_start(tiny_settings, down_uri, service_log):
    app = create_app(_mongo_settings(tiny_settings, down_uri), retry_interval=0)
    client = app.test_client()
    assert_says_only_unavailable(client.get("/readyz"), "not_ready", down_uri)
    assert_says_only_unavailable(client.post("/detect-toxic", json={"sequence": "you idiot"}), "not_ready", down_uri)
    # The operator still learns where and why: the details are in the service log.
    logged = service_log.text()
    assert "Topology" in logged and COLLECTION in logged, logged


def test_store_down_while_serving(tiny_settings, tiny_vocab_pairs, down_uri, driver_error, monkeypatch, service_log):
    server = mongomock.MongoClient()
    server[DATABASE][COLLECTION].insert_many([{"word": w, "index": i} for w, i in tiny_vocab_pairs])
    write_mongo_meta(server, database=DATABASE, collection=COLLECTION, source="test")
    # The store makes its own client from the URI: here, one to the same in-memory server.
    monkeypatch.setattr("toxic_service.vocab.mongo.MongoClient", lambda *a, **kw: mongomock.MongoClient(_store=server._store))
    app = create_app(_mongo_settings(tiny_settings, down_uri))
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    assert client.post("/detect-toxic", json={"sequence": "you idiot"}).status_code == 200

    def down(*args, **kwargs):
        raise driver_error

    monkeypatch.setattr(mongomock.collection.Collection, "find", down)
    monkeypatch.setattr(mongomock.database.Database, "command", down)
    # Words the cache has not seen, so the store is asked.
    scored = client.post("/detect-toxic", json={"sequence": "thank you kindly"})
    assert_says_only_unavailable(scored, "store_unavailable", down_uri)
    assert_says_only_unavailable(client.get("/readyz"), "store_unavailable", down_uri)
    logged = service_log.text()
    assert "Topology" in logged and COLLECTION in logged, logged
