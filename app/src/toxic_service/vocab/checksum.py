"""The vocabulary checksum that ties a model bundle to the vocabulary it was built with.

sha256 over one "word\\tindex\\n" line per entry, in ascending index order,
UTF-8 encoded. Computed streaming, so 400k words never sit in memory twice:
callers feed pairs already ordered by index (SQLite `ORDER BY idx`, MongoDB
`sort("index")`, or a sorted list).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from toxic_service.errors import BadRequest

PREFIX = "sha256:"


def check_word(word: object) -> str:
    """A word the checksum (and both stores) can hold unambiguously."""
    if not isinstance(word, str) or not word:
        raise ValueError(f"vocabulary word {word!r} must be a non-empty string")
    # A tab or newline inside a word would make two different vocabularies hash alike.
    if "\t" in word or "\n" in word:
        raise ValueError(f"vocabulary word {word!r} contains a tab or newline")
    return word


def check_index(word: str, index: object) -> int:
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError(f"vocabulary word {word!r} has index {index!r}: expected a non-negative integer")
    return index


def check_pair(word: object, index: object, index_base: int) -> tuple[str, int]:
    """One (word, index) a store may be written with; BadRequest names what is wrong."""
    try:
        pair = check_word(word), check_index(str(word), index)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if pair[1] < index_base:
        raise BadRequest(f"word {word!r} has index {index}, below the vocabulary's index_base {index_base}")
    return pair


def vocabulary_checksum(pairs: Iterable[tuple[str, int]]) -> str:
    """"sha256:<hex>" of `(word, index)` pairs given in strictly ascending index order."""
    digest = hashlib.sha256()
    previous: int | None = None
    for word, index in pairs:
        check_word(word)
        check_index(word, index)
        if previous is not None and index <= previous:
            raise ValueError(
                f"vocabulary pairs must come in strictly ascending index order: {word!r} has index {index} after {previous}"
            )
        previous = index
        digest.update(f"{word}\t{index}\n".encode())
    return PREFIX + digest.hexdigest()
