"""Any vocabulary a user can give, told apart by content: SQLite file, dump, Keras tokenizer.

`model import --vocab` and `vocab import` both go through here, so the
checksum a bundle records is the one the store will hold for the same file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from toxic_service.importers import InputFileError
from toxic_service.importers.keras_tokenizer import KerasTokenizerSpec, load_keras_tokenizer
from toxic_service.vocab.checksum import vocabulary_checksum


@dataclass(frozen=True)
class LoadedVocabulary:
    pairs: list[tuple[str, int]]  # ascending index
    source: str
    index_base: int
    tokenizer: KerasTokenizerSpec | None = None  # when the vocabulary came from a Keras tokenizer

    @property
    def checksum(self) -> str:
        return vocabulary_checksum(self.pairs)


def sniff(path: Path) -> str:
    """ "sqlite", "dump", "pickle" or "json" from the first bytes."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc})") from exc
    if head.startswith(b"SQLite format 3\x00"):
        return "sqlite"
    if head.startswith(b"\x1f\x8b"):
        return "dump"
    if head.startswith(b"\x80"):
        return "pickle"
    if head.lstrip().startswith(b"{"):
        return "json"
    raise InputFileError(f"{path}: not a vocabulary (SQLite file, vocabulary dump, or Keras tokenizer JSON/pickle)")


def from_tokenizer(spec: KerasTokenizerSpec) -> LoadedVocabulary:
    limit = f", num_words {spec.num_words}" if spec.num_words else ""
    return LoadedVocabulary(
        pairs=spec.pairs(), source=f"Keras tokenizer {Path(spec.origin).name}{limit}", index_base=1, tokenizer=spec
    )


def load_any(path: Path, *, progress: Callable[[int], None] | None = None) -> LoadedVocabulary:
    """A vocabulary from a SQLite store file, a dump, or a Keras tokenizer file."""
    kind = sniff(path)
    if kind == "sqlite":
        from toxic_service.errors import StoreUnavailable
        from toxic_service.vocab.sqlite import SqliteVocabularyStore

        store = SqliteVocabularyStore(path)
        try:
            info = store.info()
            pairs = [(str(w), int(i)) for w, i in store.iter_pairs()]
        except StoreUnavailable as exc:
            raise InputFileError(f"{path}: not a toxic-service vocabulary file ({exc})") from exc
        finally:
            store.close()
        loaded = LoadedVocabulary(pairs=pairs, source=info.source, index_base=info.index_base)
        if loaded.checksum != info.checksum:
            raise InputFileError(f"{path}: its content does not match the checksum in its meta table (file corrupt?)")
        return loaded
    if kind == "dump":
        from toxic_service.importers.dump import read_dump

        header, pairs = read_dump(path, progress=progress)
        return LoadedVocabulary(pairs=pairs, source=header.source, index_base=header.index_base)
    return from_tokenizer(load_keras_tokenizer(path))
