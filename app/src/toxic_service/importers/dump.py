"""The portable vocabulary dump: what `vocab export` writes and `vocab import --from-dump` reads.

Format (gzip-compressed JSON Lines, UTF-8), chosen over TSV because JSON
escapes every character a word can hold, so no word can break a line:

    line 1   {"format": "toxic-service-vocabulary", "version": 1,
              "checksum": "sha256:...", "size": N, "index_base": 1, "source": "..."}
    line 2+  ["word", index]        one per word, ascending index

The checksum is the store checksum (vocab/checksum.py) over the lines that
follow; reading recomputes it and refuses a dump that does not match.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from toxic_service.importers import InputFileError
from toxic_service.vocab.checksum import vocabulary_checksum

FORMAT = "toxic-service-vocabulary"
VERSION = 1


@dataclass(frozen=True)
class DumpHeader:
    checksum: str
    size: int
    index_base: int
    source: str


def write_dump(
    path: Path,
    pairs: Iterable[tuple[str, int]],
    *,
    header: DumpHeader,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write atomically: a partial file never takes the final name."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "checksum": header.checksum,
        "size": header.size,
        "index_base": header.index_base,
        "source": header.source,
    }
    try:
        # mtime=0: the same vocabulary always gives the same bytes.
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write((json.dumps(doc, sort_keys=True) + "\n").encode())
            for word, index in pairs:
                gz.write((json.dumps([word, index], ensure_ascii=False) + "\n").encode())
                if progress is not None:
                    progress(1)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_dump_header(path: Path) -> DumpHeader:
    path = Path(path)
    try:
        with gzip.open(path, "rb") as fh:
            first = fh.readline(1 << 20)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputFileError(f"{path}: not a gzip vocabulary dump ({exc})") from exc
    try:
        doc = json.loads(first)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: the first line is not a dump header") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputFileError(f"{path}: not a toxic-service vocabulary dump")
    if doc.get("version") != VERSION:
        raise InputFileError(f"{path}: dump version {doc.get('version')!r} is not supported (expected {VERSION})")
    try:
        header = DumpHeader(
            checksum=str(doc["checksum"]),
            size=int(doc["size"]),
            index_base=int(doc["index_base"]),
            source=str(doc.get("source", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(f"{path}: dump header lacks {exc}") from exc
    if header.index_base not in (0, 1):
        raise InputFileError(f"{path}: index_base {header.index_base} is not 0 or 1")
    return header


def read_dump(path: Path, *, progress: Callable[[int], None] | None = None) -> tuple[DumpHeader, list[tuple[str, int]]]:
    """Header and pairs; refuses a dump whose content does not match its header."""
    path = Path(path)
    header = read_dump_header(path)
    pairs: list[tuple[str, int]] = []
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="\n") as fh:
            fh.readline()
            for lineno, line in enumerate(fh, 2):
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputFileError(f"{path}:{lineno}: not a JSON line") from exc
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], int)):
                    raise InputFileError(f'{path}:{lineno}: expected ["word", index]')
                pairs.append((item[0], item[1]))
                if progress is not None:
                    progress(1)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: truncated or corrupt ({exc})") from exc
    if len(pairs) != header.size:
        raise InputFileError(f"{path}: header says {header.size} words, the file holds {len(pairs)}")
    try:
        checksum = vocabulary_checksum(pairs)
    except ValueError as exc:
        raise InputFileError(f"{path}: {exc}") from exc
    if checksum != header.checksum:
        raise InputFileError(f"{path}: content checksum {checksum} differs from the header's {header.checksum}")
    return header, pairs
