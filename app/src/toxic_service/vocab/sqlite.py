"""The embedded vocabulary store: one read-only SQLite file.

Layout (written only by `write_sqlite`, i.e. `toxic-service vocab import`):
    vocab(word TEXT PRIMARY KEY, idx INTEGER NOT NULL) WITHOUT ROWID
    UNIQUE INDEX vocab_idx ON vocab(idx)      -- export order, no duplicate indexes
    meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)   -- checksum, size, source, index_base (vocab/meta.py reads it)

The service opens the file with `mode=ro`, one connection per thread (sqlite3
connections must not be shared between threads nor survive a fork), and asks
one query per request: the request's distinct words as one JSON array joined
against the primary key, or `IN (?, ...)` where SQLite has no json_each.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from urllib.parse import quote

from toxic_service.errors import BadRequest, StoreUnavailable, VocabularyError
from toxic_service.vocab.base import VocabularyInfo
from toxic_service.vocab.checksum import check_pair, vocabulary_checksum
from toxic_service.vocab.meta import REQUIRED_KEYS, info_from_meta, meta_from_connection

# SQLite before 3.32 allowed 999 bound variables; newer builds report their own limit.
_DEFAULT_VARIABLE_LIMIT = 999
_WRITE_BATCH = 10_000
# One JSON array joined against the primary key: for the hundreds of words of a cold batch it is ~30% faster
# than `IN (?, ...)`, which first sorts its values into a temporary index (bench/service's batches).
_JSON_LOOKUP = "SELECT v.word, v.idx FROM json_each(?) AS j JOIN vocab AS v ON v.word = j.value"


def _has_json_each(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1 FROM json_each('[]')").fetchall()
    except sqlite3.OperationalError:  # "no such table: json_each"
        return False
    return True


def _variable_limit(conn: sqlite3.Connection) -> int:
    getlimit = getattr(conn, "getlimit", None)  # Python >= 3.11
    if getlimit is None:
        return _DEFAULT_VARIABLE_LIMIT
    return int(getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))


class SqliteVocabularyStore:
    """Read-only word -> index lookups from a file made by `write_sqlite`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise VocabularyError(f"vocabulary file {self.path} does not exist (build it with `toxic-service vocab import`)")
        self._uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._info: VocabularyInfo | None = None
        self._has_json: bool | None = None  # json_each: built into SQLite >= 3.38, an extension before

    def _file_identity(self) -> tuple[int, int]:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise StoreUnavailable(f"vocabulary file {self.path} is gone ({exc.strerror})") from exc
        return st.st_dev, st.st_ino

    def _conn(self) -> sqlite3.Connection:
        # An open descriptor keeps reading a file that was renamed away or
        # replaced; one stat per query notices both (about a microsecond).
        identity = self._file_identity()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        # A connection inherited through fork() is unusable: reopen in the child.
        if conn is None or self._local.pid != os.getpid() or self._local.identity != identity:
            reopened = conn is not None
            if reopened and self._local.pid == os.getpid():  # never touch a parent's connection after fork
                with self._lock:
                    self._connections.remove(conn)
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            try:
                # Each connection is used by its own thread only; False lets close() end them all at shutdown.
                conn = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
                conn.execute("PRAGMA query_only = ON")
                if self._has_json is None:
                    self._has_json = _has_json_each(conn)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"cannot open vocabulary file {self.path}: {exc}") from exc
            self._local.conn = conn
            self._local.pid = os.getpid()
            self._local.identity = identity
            with self._lock:
                self._connections.append(conn)
            if reopened:
                self._refuse_other_vocabulary(conn)
        return conn

    def _refuse_other_vocabulary(self, conn: sqlite3.Connection) -> None:
        """A replaced file must hold the vocabulary the model was checked against."""
        if self._info is None:
            return
        try:
            checksum = meta_from_connection(conn, self.path)["checksum"]
        except VocabularyError as exc:
            self._local.identity = None  # check again on the next query
            raise VocabularyError(f"{exc}; the file was replaced while serving: restart the service") from exc
        if checksum != self._info.checksum:
            self._local.identity = None  # check again on the next query
            raise StoreUnavailable(
                f"vocabulary file {self.path} was replaced by a different vocabulary "
                f"({checksum}; the model needs {self._info.checksum}): restart the service"
            )

    def _query(self, sql: str, params: Iterable[object] = ()) -> list[tuple]:
        try:
            return self._conn().execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"vocabulary file {self.path}: {exc}") from exc

    def lookup(self, words: Iterable[str]) -> Mapping[str, int]:
        distinct = list(dict.fromkeys(words))
        if not distinct:
            return {}
        found: dict[str, int] = {}
        conn = self._conn()
        if self._has_json:
            # json_each ends a string at U+0000 ("a\0b" would find "a"): such words take the IN form.
            plain = [word for word in distinct if "\x00" not in word]
            if plain:
                found.update(self._query(_JSON_LOOKUP, (json.dumps(plain, ensure_ascii=False),)))
            distinct = [word for word in distinct if "\x00" in word]
        # Read per call (cheap): the limit belongs to this thread's connection.
        limit = _variable_limit(conn)
        # One query per request; more only when a request holds more distinct
        # words than SQLite accepts bound variables (250,000 on current builds).
        for start in range(0, len(distinct), limit):
            chunk = distinct[start : start + limit]
            marks = ",".join("?" * len(chunk))
            found.update(self._query(f"SELECT word, idx FROM vocab WHERE word IN ({marks})", chunk))  # noqa: S608 (only '?' marks)
        return found

    def info(self) -> VocabularyInfo:
        if self._info is None:
            self._info = info_from_meta(meta_from_connection(self._conn(), self.path))
        return self._info

    def ping(self) -> None:
        self._query("SELECT 1 FROM vocab LIMIT 1")

    def iter_pairs(self) -> Iterable[tuple[str, int]]:
        """Every (word, index) in index order (export, checksum verification)."""
        try:
            yield from self._conn().execute("SELECT word, idx FROM vocab ORDER BY idx")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"vocabulary file {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            # Closing another thread's connection can raise; harmless at shutdown.
            with contextlib.suppress(sqlite3.ProgrammingError):
                conn.close()
        self._local = threading.local()


def _insert_batch(conn: sqlite3.Connection, batch: list[tuple[str, int]]) -> None:
    conn.execute("SAVEPOINT batch")
    try:
        conn.executemany("INSERT INTO vocab(word, idx) VALUES (?, ?)", batch)
    except sqlite3.IntegrityError:
        # Only the word key can clash here; replay the batch to name the word.
        conn.execute("ROLLBACK TO batch")
        seen: set[str] = set()
        for word, _ in batch:
            if word in seen or conn.execute("SELECT 1 FROM vocab WHERE word = ?", (word,)).fetchone():
                raise BadRequest(f"duplicate word {word!r} in the vocabulary") from None
            seen.add(word)
        raise
    conn.execute("RELEASE batch")


def write_sqlite(
    path: Path | str,
    pairs: Iterable[tuple[str, int]],
    *,
    source: str,
    index_base: int,
    progress: Callable[[int], None] | None = None,
) -> VocabularyInfo:
    """Write a vocabulary file atomically: a temp file in the same directory, then os.replace.

    Refuses (BadRequest, nothing written) duplicate words, duplicate indexes,
    indexes below `index_base`, empty or malformed words, and an empty
    vocabulary. `progress(n)` is called with the number of pairs just written
    (tqdm's `update` fits).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)  # explicit BEGIN/COMMIT below
        try:
            # The file is thrown away on any failure, so durability matters only at the end (fsync below).
            conn.execute("PRAGMA journal_mode = MEMORY")  # OFF would break ROLLBACK TO
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("CREATE TABLE vocab(word TEXT PRIMARY KEY, idx INTEGER NOT NULL) WITHOUT ROWID")
            conn.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("BEGIN")
            batch: list[tuple[str, int]] = []
            count = 0
            for word, index in pairs:
                check_pair(word, index, index_base)
                batch.append((word, index))
                if len(batch) >= _WRITE_BATCH:
                    _insert_batch(conn, batch)
                    count += len(batch)
                    if progress:
                        progress(len(batch))
                    batch = []
            if batch:
                _insert_batch(conn, batch)
                count += len(batch)
                if progress:
                    progress(len(batch))
            if count == 0:
                raise BadRequest("the vocabulary is empty")
            try:
                conn.execute("CREATE UNIQUE INDEX vocab_idx ON vocab(idx)")
            except sqlite3.IntegrityError:
                index, words = conn.execute(
                    "SELECT idx, group_concat(word, ', ') FROM vocab GROUP BY idx HAVING count(*) > 1 LIMIT 1"
                ).fetchone()
                raise BadRequest(f"index {index} is used by more than one word: {words}") from None
            checksum = vocabulary_checksum(conn.execute("SELECT word, idx FROM vocab ORDER BY idx"))
            info = VocabularyInfo(checksum=checksum, size=count, index_base=index_base, source=source)
            values = {"checksum": checksum, "size": str(count), "source": source, "index_base": str(index_base)}
            # Every key read_meta requires, and only those: the reader and the writer cannot drift apart.
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", [(key, values[key]) for key in REQUIRED_KEYS])
            conn.execute("COMMIT")
            conn.execute("VACUUM")
        finally:
            conn.close()
        os.chmod(tmp, 0o644)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return info
