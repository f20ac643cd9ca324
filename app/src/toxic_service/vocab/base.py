"""The vocabulary store interface every backend implements.

One call to `lookup` is one query to the backend, whatever the number of
words: the request path asks once per request or batch, never once per word.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class VocabularyInfo:
    """What the store says about itself (its `meta`), checked against a bundle."""

    checksum: str  # sha256 over "word\tindex\n" lines sorted by index
    size: int
    index_base: int  # smallest index in use (1 for Keras; 0 only for seed dumps)
    source: str


@runtime_checkable
class VocabularyStore(Protocol):
    def lookup(self, words: Iterable[str]) -> Mapping[str, int]:
        """Indexes of the known words among `words` (unknown words are absent).

        Raises StoreUnavailable when the backend does not answer.
        """

    def info(self) -> VocabularyInfo:
        """The store's metadata. Raises StoreUnavailable when it does not answer."""

    def ping(self) -> None:
        """Cheap liveness check for /readyz. Raises StoreUnavailable."""

    def close(self) -> None: ...
