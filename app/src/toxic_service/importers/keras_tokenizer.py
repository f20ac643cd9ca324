"""Read a Keras `Tokenizer` without Keras: from `tokenizer.to_json()` or from a pickle.

Pickles are read through `RestrictedUnpickler`, never plain `pickle.load`: a
pickle can name any callable, and loading one runs it. Ours resolves only the
few classes a tokenizer pickle needs (dict-like containers and `int`), and
maps the Keras `Tokenizer` class (wherever Keras kept it) and tox-block's
wrapper class to tiny local stand-ins that only hold attributes, so neither
keras nor tox_block need be importable. Anything else is refused by name.
"""

from __future__ import annotations

import collections
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toxic_service.bundle import KERAS_FILTERS, TokenizerConfig
from toxic_service.importers import InputFileError
from toxic_service.vocab.checksum import check_index, check_word

MAX_FILE_BYTES = 1 << 30  # a tokenizer pickle larger than 1 GiB is not a tokenizer


class _AttributeHolder:
    """Stand-in for a pickled object: pickle's BUILD fills `__dict__`, nothing runs."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"unexpected state of type {type(state).__name__}")
        self.__dict__.update(state)


class KerasTokenizerStandIn(_AttributeHolder):
    """Holds a Keras Tokenizer's attributes (word_index, num_words, filters, ...)."""


class TokenSequencerStandIn(_AttributeHolder):
    """Holds tox-block's TokenSequencer attributes (tokenizer, max_sequence_length, max_features)."""


# Every place Keras has kept its Tokenizer class, and tox-block's wrapper.
_TOKENIZER_CLASSES = {
    ("keras_preprocessing.text", "Tokenizer"),
    ("keras.preprocessing.text", "Tokenizer"),
    ("keras.src.preprocessing.text", "Tokenizer"),
    ("keras.src.legacy.preprocessing.text", "Tokenizer"),
    ("tensorflow.keras.preprocessing.text", "Tokenizer"),
    ("tensorflow.python.keras.preprocessing.text", "Tokenizer"),
    ("tf_keras.preprocessing.text", "Tokenizer"),
    ("tf_keras.src.preprocessing.text", "Tokenizer"),
}
_WRAPPER_CLASSES = {("tox_block.data_processing.preprocessors", "TokenSequencer")}
_SAFE_CLASSES: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("builtins", "int"): int,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "str"): str,
    ("__builtin__", "int"): int,  # protocol 2 pickles written by Python 2
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the classes listed above; any other global is an error."""

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _TOKENIZER_CLASSES:
            return KerasTokenizerStandIn
        if key in _WRAPPER_CLASSES:
            return TokenSequencerStandIn
        if key in _SAFE_CLASSES:
            return _SAFE_CLASSES[key]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a Keras tokenizer pickle")


@dataclass(frozen=True)
class KerasTokenizerSpec:
    """What a fitted Keras Tokenizer says about turning text into indexes."""

    word_index: dict[str, int]
    num_words: int | None
    tokenizer: TokenizerConfig
    oov_token: str | None
    max_len: int | None  # known only when a wrapper (tox-block) recorded it
    origin: str

    @property
    def oov_index(self) -> int | None:
        if self.oov_token is None:
            return None
        return self.word_index.get(self.oov_token)

    def pairs(self) -> list[tuple[str, int]]:
        """(word, index) for the indexes the tokenizer really emits, ascending by index.

        Keras's texts_to_sequences drops index i when `num_words and i >= num_words`.
        """
        limit = self.num_words
        kept = [(w, i) for w, i in self.word_index.items() if not limit or i < limit]
        kept.sort(key=lambda pair: pair[1])
        return kept


def _spec_from_attributes(attrs: dict[str, Any], *, max_len: int | None, origin: str) -> KerasTokenizerSpec:
    if attrs.get("char_level"):
        raise InputFileError(f"{origin}: a character-level tokenizer (char_level=True) is not supported")
    word_index = attrs.get("word_index")
    if isinstance(word_index, str):  # to_json() stores it JSON-encoded inside the JSON
        word_index = json.loads(word_index)
    if not isinstance(word_index, dict) or not word_index:
        raise InputFileError(f"{origin}: no word_index (is this a fitted Keras Tokenizer?)")
    seen: dict[int, str] = {}
    clean: dict[str, int] = {}
    for word, index in word_index.items():
        try:
            check_word(word)
            check_index(word, index)
        except ValueError as exc:
            raise InputFileError(f"{origin}: {exc}") from exc
        if index == 0:
            raise InputFileError(f"{origin}: word {word!r} has index 0, which Keras reserves for padding")
        if index in seen:
            raise InputFileError(f"{origin}: words {seen[index]!r} and {word!r} share index {index}")
        seen[index] = word
        clean[word] = index
    num_words = attrs.get("num_words")
    if num_words is not None and (not isinstance(num_words, int) or isinstance(num_words, bool) or num_words < 0):
        raise InputFileError(f"{origin}: num_words {num_words!r} is not a non-negative integer")
    filters = attrs.get("filters", KERAS_FILTERS)
    split = attrs.get("split", " ")
    lower = attrs.get("lower", True)
    if not isinstance(filters, str) or not isinstance(split, str) or not split or not isinstance(lower, bool):
        raise InputFileError(f"{origin}: filters/split/lower have unexpected values")
    oov = attrs.get("oov_token")
    if oov is not None and not isinstance(oov, str):
        raise InputFileError(f"{origin}: oov_token {oov!r} is not a string")
    return KerasTokenizerSpec(
        word_index=clean,
        num_words=num_words or None,
        tokenizer=TokenizerConfig(lower=lower, filters=filters, split=split),
        oov_token=oov,
        max_len=max_len,
        origin=origin,
    )


def load_tokenizer_json(path: Path) -> KerasTokenizerSpec:
    """A tokenizer saved with `tokenizer.to_json()`."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("class_name") != "Tokenizer" or not isinstance(doc.get("config"), dict):
        raise InputFileError(f"{path}: not a Keras tokenizer JSON (expected class_name 'Tokenizer' and a config)")
    try:
        return _spec_from_attributes(doc["config"], max_len=None, origin=str(path))
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: word_index is not valid JSON ({exc})") from exc


def load_tokenizer_pickle(path: Path) -> KerasTokenizerSpec:
    """A pickled Keras Tokenizer, or tox-block's TokenSequencer around one."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputFileError(f"{path}: larger than {MAX_FILE_BYTES} bytes; not a tokenizer")
        with path.open("rb") as fh:
            obj = RestrictedUnpickler(fh).load()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc})") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise InputFileError(f"{path}: not a Keras tokenizer pickle ({exc})") from exc
    max_len = None
    if isinstance(obj, TokenSequencerStandIn):
        max_len = obj.__dict__.get("max_sequence_length")
        if max_len is not None and (not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1):
            raise InputFileError(f"{path}: max_sequence_length {max_len!r} is not a positive integer")
        obj = obj.__dict__.get("tokenizer")
    if not isinstance(obj, KerasTokenizerStandIn):
        raise InputFileError(f"{path}: the pickle does not hold a Keras Tokenizer")
    return _spec_from_attributes(obj.__dict__, max_len=max_len, origin=str(path))


def load_keras_tokenizer(path: Path) -> KerasTokenizerSpec:
    """JSON or pickle, told apart by the first byte (pickles start with 0x80)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(1)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc})") from exc
    if head == b"\x80":
        return load_tokenizer_pickle(path)
    if head in (b"{", b" ", b"\n"):
        return load_tokenizer_json(path)
    raise InputFileError(f"{path}: neither a Keras tokenizer JSON nor a pickle")
