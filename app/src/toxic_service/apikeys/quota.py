"""Per-key quotas shared by every worker of a host: a token bucket per key name in one SQLite file.

Each gunicorn worker is its own process, so a counter in memory would give
each worker the whole quota. The buckets live in an SQLite file beside the
keys file (WAL mode: readers never wait, writers queue on SQLite's lock), and
one request costs one UPDATE that refills the bucket for the time since its
last use, capped at one second's worth (the burst), and takes a token only if
one is there; the WHERE clause makes test-and-take one atomic statement, so
no two workers can spend the same token.

The same row records when the key was last used (`keys list` shows it). The
state is not precious: losing the file resets the buckets to full and the
"last used" times to never.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from toxic_service.errors import ConfigurationError

BUSY_TIMEOUT_MS = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    updated REAL NOT NULL,
    last_used REAL
) WITHOUT ROWID
"""
# Refill by the time since `updated` (never negative: a clock step back refills nothing), cap at the burst,
# and take one token only if at least one is there.
_TAKE = """
UPDATE buckets
   SET tokens = min(:burst, tokens + max(0.0, :now - updated) * :rate) - 1.0, updated = :now, last_used = :now
 WHERE name = :name AND min(:burst, tokens + max(0.0, :now - updated) * :rate) >= 1.0
"""


class QuotaStateError(ConfigurationError):
    """The buckets file cannot be opened or written (a read-only directory, a full disk)."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: int = 0  # whole seconds until a token is there again (when refused)


def state_path(keys_file: Path) -> Path:
    """Where the buckets of `keys_file`'s keys live: beside it, `<stem>.quota.sqlite`."""
    keys_file = Path(keys_file)
    return keys_file.with_name(keys_file.stem + ".quota.sqlite")


def burst(qps: int) -> float:
    """A bucket holds one second's worth of requests: a client may send its second's quota at once."""
    return float(max(1, qps))


class QuotaStore:
    """The buckets file, opened lazily per process (an SQLite connection must not cross a fork)."""

    def __init__(self, path: Path, clock=time.time) -> None:
        self.path = Path(path)
        self._clock = clock  # wall time: the file outlives processes, and every process must read the same clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._known: set[str] = set()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            # A lost commit only refills a bucket a little early: no fsync per request.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(_SCHEMA)
            self._conn, self._pid, self._known = conn, os.getpid(), set()
        return self._conn

    def take(self, name: str, qps: int) -> Decision:
        """Spend one of `name`'s tokens at `qps` requests per second, or say how long until one is there."""
        params = {"name": name, "rate": float(qps), "burst": burst(qps), "now": self._clock()}
        with self._lock:
            try:
                conn = self._connection()
                if name not in self._known:
                    conn.execute(
                        "INSERT OR IGNORE INTO buckets (name, tokens, updated) VALUES (:name, :burst, :now)", params
                    )
                    self._known.add(name)
                if conn.execute(_TAKE, params).rowcount == 1:
                    return Decision(True)
                row = conn.execute("SELECT tokens, updated FROM buckets WHERE name = ?", (name,)).fetchone()
            except sqlite3.Error as exc:
                self._conn = None  # open it again on the next request: the directory may be fixed by then
                raise QuotaStateError(
                    f"quota state file {self.path}: {exc}; its directory must exist and be writable by the service user"
                ) from exc
        if row is None:  # the row went away under us (file replaced): let this one through, the next re-creates it
            self._known.discard(name)
            return Decision(True)
        tokens, updated = row
        have = min(params["burst"], tokens + max(0.0, params["now"] - updated) * params["rate"])
        return Decision(False, max(1, math.ceil((1.0 - have) / params["rate"])))

    def last_used(self) -> dict[str, float]:
        """{name: UNIX time of its last accepted request} (read-only; an absent file: none yet)."""
        if not self.path.is_file():
            return {}
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            rows = conn.execute("SELECT name, last_used FROM buckets WHERE last_used IS NOT NULL").fetchall()
        except sqlite3.OperationalError:  # no table yet
            return {}
        finally:
            conn.close()
        return dict(rows)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
