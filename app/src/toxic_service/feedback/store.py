"""The feedback store: `comments:suggestscore` suggestions in one SQLite file on the host.

Durability: the file is in WAL mode with `synchronous=FULL`, and a write
returns only after its COMMIT, which then has fsynced the WAL. A worker
killed after answering 200 loses nothing (that needs only the COMMIT: the
WAL is in the kernel's page cache); FULL also keeps the row through a power
cut, which NORMAL under WAL would not. Suggestions are rare next to
analyze calls, so the fsync per write (a few ms) is affordable.

Concurrency: every gunicorn worker opens its own connection lazily, on its
first suggestion (a connection must not cross a fork), and writes in
`BEGIN IMMEDIATE` transactions; `busy_timeout` makes a worker wait for
another's write instead of failing.

Size cap: `PRAGMA max_page_count`, set on every connection from
TOXIC_FEEDBACK_MAX_BYTES. An insert that would grow the database past it
fails inside its transaction, which is rolled back: a suggestion is stored
whole or not at all, and FeedbackStoreFull says so. The cap counts the
database file; the WAL beside it is checkpointed back into the file every
1000 pages and truncated to `journal_size_limit`.

Schema (version 1):
    suggestion       one row per request: time (UTC), key name, communityId,
                     sessionId, clientToken, the text (NULL with doNotStore),
                     its type, the languages the client gave
    suggested_score  one row per summary score (span_begin/span_end NULL)
                     and per span score, attribute -> value
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from toxic_service.errors import ToxicServiceError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000
# The WAL file is cut back to this after a checkpoint (it would otherwise keep its largest size).
JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS suggestion (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    key_name TEXT,
    community_id TEXT,
    session_id TEXT,
    client_token TEXT,
    comment_text TEXT,
    text_type TEXT NOT NULL,
    languages TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS suggested_score (
    suggestion_id INTEGER NOT NULL REFERENCES suggestion (id),
    attribute TEXT NOT NULL,
    value REAL NOT NULL,
    span_begin INTEGER,
    span_end INTEGER
);
CREATE INDEX IF NOT EXISTS suggested_score_by_suggestion ON suggested_score (suggestion_id);
"""


class FeedbackError(ToxicServiceError):
    """The feedback store cannot do what was asked (the message names the file and why)."""


class FeedbackStoreFull(FeedbackError):
    """The store reached TOXIC_FEEDBACK_MAX_BYTES (or the disk is full); nothing was written."""


class FeedbackUnavailable(FeedbackError):
    """The store cannot be opened or written (directory not writable, not a feedback file, locked too long)."""


class FeedbackStoreMissing(FeedbackError):
    """A reader (export, stats) was pointed at a file that does not exist."""

    code = "bad_input_file"


@dataclass(frozen=True)
class SpanSuggestion:
    begin: int  # UTF-16 code units into the text, end exclusive
    end: int
    value: float


@dataclass(frozen=True)
class AttributeSuggestion:
    attribute: str  # the Perspective name (TOXICITY, ...)
    summary: float | None
    spans: tuple[SpanSuggestion, ...] = ()

    @property
    def comment_value(self) -> float:
        """The value for the whole comment: the summary score, else the highest span score (a comment is
        toxic when any part of it is, as the Jigsaw labels were given)."""
        if self.summary is not None:
            return self.summary
        return max(span.value for span in self.spans)


@dataclass(frozen=True)
class Suggestion:
    text: str | None  # None: doNotStore
    text_type: str
    attributes: tuple[AttributeSuggestion, ...]
    key_name: str | None = None
    community_id: str | None = None
    session_id: str | None = None
    client_token: str | None = None
    languages: tuple[str, ...] = ()
    created_at: str = field(default_factory=lambda: _utc_now())
    id: int | None = None


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    return code == getattr(sqlite3, "SQLITE_FULL", 13) or "database or disk is full" in str(exc)


class FeedbackStore:
    """One SQLite feedback file. Safe across processes (each opens its own connection) and threads (a lock)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None

    # --- connection ----------------------------------------------------------------------------------

    def _connect(self, *, create: bool) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # A connection inherited through fork belongs to the parent: never use or close it here.
        self._conn = None
        if not create and not self.path.is_file():
            raise FeedbackStoreMissing(f"{self.path}: no feedback store here (no suggestion stored yet?)")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            mode = "rwc" if create else "rw"
            conn = sqlite3.connect(
                f"file:{self.path}?mode={mode}", uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:
            raise FeedbackUnavailable(f"{self.path}: cannot open the feedback store ({exc})") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode_now = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode_now).lower() != "wal":
                raise FeedbackUnavailable(f"{self.path}: cannot switch the feedback store to WAL mode (got {mode_now})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            conn.execute("PRAGMA foreign_keys = ON")
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {max(1, self.max_bytes // page_size)}")
            if create:
                self._create_schema(conn)
            self._check_schema(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise FeedbackUnavailable(f"{self.path}: not a usable feedback store ({exc})") from exc
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _abort(self, conn: sqlite3.Connection, exc: sqlite3.Error) -> None:
        """Roll back a failed write; a full store is FeedbackStoreFull (the caller re-raises anything else)."""
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if _is_full(exc):
            raise FeedbackStoreFull(self._full_message()) from exc

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._abort(conn, exc)
            raise

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:
            row = None
        if row is None:
            raise FeedbackUnavailable(f"{self.path}: not a feedback store (no schema_version in a meta table)")
        if row[0] != str(SCHEMA_VERSION):
            raise FeedbackUnavailable(
                f"{self.path}: feedback schema version {row[0]}; this toxic-service reads version {SCHEMA_VERSION}"
            )

    def _full_message(self) -> str:
        return (
            f"the feedback store is full (cap TOXIC_FEEDBACK_MAX_BYTES={self.max_bytes} bytes, or the disk is full); "
            "export it (toxic-service feedback export) and move the file away, or raise the cap"
        )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # --- writing -------------------------------------------------------------------------------------

    def add(self, suggestion: Suggestion) -> int:
        """Store one suggestion whole, committed (fsynced) before this returns; its row id.

        FeedbackStoreFull when the cap (or the disk) is reached, FeedbackUnavailable when the
        file cannot be written; in both cases nothing of the suggestion is stored.
        """
        with self._lock:
            conn = self._connect(create=True)
            try:
                conn.execute("BEGIN IMMEDIATE")
                cursor = conn.execute(
                    "INSERT INTO suggestion (created_at, key_name, community_id, session_id, client_token,"
                    " comment_text, text_type, languages) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        suggestion.created_at,
                        suggestion.key_name,
                        suggestion.community_id,
                        suggestion.session_id,
                        suggestion.client_token,
                        suggestion.text,
                        suggestion.text_type,
                        json.dumps(list(suggestion.languages)),
                    ),
                )
                row_id = int(cursor.lastrowid)
                rows = []
                for item in suggestion.attributes:
                    if item.summary is not None:
                        rows.append((row_id, item.attribute, item.summary, None, None))
                    rows.extend((row_id, item.attribute, span.value, span.begin, span.end) for span in item.spans)
                conn.executemany(
                    "INSERT INTO suggested_score (suggestion_id, attribute, value, span_begin, span_end)"
                    " VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._abort(conn, exc)
                raise FeedbackUnavailable(f"{self.path}: cannot write the suggestion ({exc})") from exc
            return row_id

    # --- reading -------------------------------------------------------------------------------------

    def suggestions(self) -> Iterator[Suggestion]:
        """Every stored suggestion, oldest first (FeedbackStoreMissing when there is no file)."""
        with self._lock:
            conn = self._connect(create=False)
            try:
                scores: dict[int, dict[str, list[tuple[float, int | None, int | None]]]] = {}
                for sid, attribute, value, begin, end in conn.execute(
                    "SELECT suggestion_id, attribute, value, span_begin, span_end FROM suggested_score"
                    " ORDER BY rowid"
                ):
                    scores.setdefault(sid, {}).setdefault(attribute, []).append((value, begin, end))
                rows = conn.execute(
                    "SELECT id, created_at, key_name, community_id, session_id, client_token, comment_text,"
                    " text_type, languages FROM suggestion ORDER BY id"
                ).fetchall()
            except sqlite3.Error as exc:
                raise FeedbackUnavailable(f"{self.path}: cannot read the feedback store ({exc})") from exc
        for sid, created, key_name, community, session, token, text, text_type, languages in rows:
            attributes = []
            for attribute, values in scores.get(sid, {}).items():
                summary = next((v for v, begin, _ in values if begin is None), None)
                spans = tuple(SpanSuggestion(begin, end, v) for v, begin, end in values if begin is not None)
                attributes.append(AttributeSuggestion(attribute, summary, spans))
            yield Suggestion(
                text=text,
                text_type=text_type,
                attributes=tuple(attributes),
                key_name=key_name,
                community_id=community,
                session_id=session,
                client_token=token,
                languages=tuple(json.loads(languages)),
                created_at=created,
                id=sid,
            )

    def size_bytes(self) -> int:
        """The database's size in pages times the page size (the figure the cap limits)."""
        with self._lock:
            conn = self._connect(create=False)
            return conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]
