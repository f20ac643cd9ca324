"""The one reader of a vocabulary's metadata: the SQLite file's `meta` table.

Everything that asks a vocabulary file what it holds goes through `read_meta`:
the app's SQLite store, `check`, the `vocab` commands (`vocab info` prints it
for toxic-release and the roles), tools/build_assets.py and the fabfile.
The table is written by `write_sqlite` only; its values are TEXT, and
`read_meta` returns `size` and `index_base` as integers.

MongoDB keeps the same fields in one document (vocab/mongo.py, `read_mongo_meta`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from toxic_service.errors import VocabularyError
from toxic_service.vocab.base import VocabularyInfo

# What every vocabulary records about itself; a file lacking one is not served.
REQUIRED_KEYS = ("checksum", "size", "source", "index_base")
_INTEGER_KEYS = ("size", "index_base")


def read_meta(path: Path | str) -> dict[str, Any]:
    """The `meta` table of the SQLite vocabulary file `path`, as a dict.

    Holds at least checksum (str), size (int), source (str) and index_base
    (int), plus any other key the table holds (as text). Raises
    VocabularyError naming the file when it is missing, not an SQLite
    database, has no `meta` table, or lacks one of those keys.
    """
    path = Path(path)
    if not path.is_file():
        raise VocabularyError(f"vocabulary file {path} does not exist (build it with `toxic-service vocab import`)")
    try:
        # mode=ro: reading metadata never creates or changes the file.
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise VocabularyError(f"cannot open vocabulary file {path}: {exc}") from exc
    try:
        return meta_from_connection(conn, path)
    finally:
        conn.close()


def meta_from_connection(conn: sqlite3.Connection, path: Path | str) -> dict[str, Any]:
    """`read_meta` on a connection already open on `path` (the store's own, per thread)."""
    try:
        rows = conn.execute("SELECT key, value FROM meta").fetchall()
    except sqlite3.DatabaseError as exc:
        # "file is not a database", "no such table: meta"
        if "no such table" in str(exc):
            raise VocabularyError(
                f"vocabulary file {path} has no meta table (not written by `toxic-service vocab import`)"
            ) from exc
        raise VocabularyError(f"vocabulary file {path} is not a readable SQLite vocabulary: {exc}") from exc
    return checked_meta(dict(rows), f"vocabulary file {path}")


def checked_meta(doc: dict[str, Any], where: str) -> dict[str, Any]:
    """`doc` with the required keys present and the integer ones as int; VocabularyError naming `where`."""
    missing = [key for key in REQUIRED_KEYS if key not in doc]
    if missing:
        raise VocabularyError(f"{where}: its metadata lacks {', '.join(missing)}; re-import it with `toxic-service vocab import`")
    meta = dict(doc)
    for key in _INTEGER_KEYS:
        try:
            meta[key] = int(meta[key])
        except (TypeError, ValueError):
            raise VocabularyError(f"{where}: metadata {key} is {meta[key]!r}, not an integer") from None
    meta["checksum"] = str(meta["checksum"])
    meta["source"] = str(meta["source"])
    return meta


def info_from_meta(meta: dict[str, Any]) -> VocabularyInfo:
    """The fields a bundle is checked against, from a `read_meta`/`read_mongo_meta` dict."""
    return VocabularyInfo(
        checksum=meta["checksum"], size=meta["size"], index_base=meta["index_base"], source=meta["source"]
    )
