"""Read a Keras `Tokenizer` without Keras: from `tokenizer.to_json()` or from a pickle.

Pickles are read through `RestrictedUnpickler`, never plain `pickle.load`: a
pickle can name any callable, and loading one runs it. Ours resolves only the
few classes a tokenizer pickle needs (dict-like containers and `int`), and
maps the Keras `Tokenizer` class (wherever Keras kept it) and tox-block's
wrapper class to tiny local stand-ins that only hold attributes, so neither
keras nor tox_block need be importable. Anything else is refused by name.

Naming only harmless classes is not enough: a pickle shares objects through
its memo, so 7 bytes add a level of lists each listing the level below twice,
and `str()` of the top (an allowed call) writes 2**levels copies of the bottom
(a reported 179-byte file took 1.46 s and 131 MB, doubling per level). So
the callables the unpickler may call are wrapped: each takes only the
argument types a tokenizer pickle gives it (`str` and `int` only plain
scalars) and charges what it builds to a per-file budget (MAX_BUILT_ITEMS). Everything else the unpickler does is one
opcode for one object, so the file-size cap bounds it. Values from the pickle
appear in error messages only through `reprlib` (bounded), as a repr of a
shared nested value would expand the same way.
"""

from __future__ import annotations

import collections
import json
import pickle
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toxic_service.bundle import KERAS_FILTERS, TokenizerConfig
from toxic_service.importers import InputFileError
from toxic_service.vocab.checksum import check_index, check_word

# tox-block's 300k-word tokenizer is 16 MB; the unpickler holds a few times a file's size.
MAX_FILE_BYTES = 256 << 20
# Items (characters, elements, state entries) the allowed calls may build per file. tox-block's
# pickle builds 15 this way (its 300k words come from opcodes, bounded by the file size); a copy
# of a shared list per call is what a crafted file would repeat.
MAX_BUILT_ITEMS = 4_000_000
_SCALARS = (str, bytes, int, float, bool, type(None))


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 60, 60


def _short(value: Any) -> str:
    """A bounded repr of a value from a pickle (a plain repr of shared nested lists can be huge)."""
    return _REPR.repr(value)


class _Budget:
    """What the calls made while loading one file have built so far."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, items: int, what: str) -> None:
        self.used += items
        if self.used > self.limit:
            raise pickle.UnpicklingError(f"{what} would build more than {self.limit} items in all; not a tokenizer")


def _guarded_calls(budget: _Budget) -> dict[tuple[str, str], Any]:
    """The callables a tokenizer pickle may call, each checking its arguments and charging `budget`."""

    def sized(name: str, make: Any, arg: Any) -> Any:
        if not isinstance(arg, (list, tuple, dict, str, bytes)):
            raise pickle.UnpicklingError(f"{name}() of a {type(arg).__name__}: not part of a Keras tokenizer pickle")
        budget.charge(len(arg), f"{name}()")
        return make(arg)

    def safe_str(value: Any = "", *rest: Any) -> str:
        if rest or not isinstance(value, _SCALARS):
            # str() of a container walks all of it, shared parts once per reference: the bomb.
            raise pickle.UnpicklingError(f"str() of a {type(value).__name__}: only plain values may be converted")
        text = str(value)
        budget.charge(len(text), "str()")
        return text

    def safe_int(value: Any = 0, *rest: Any) -> int:
        # A digit string longer than sys.get_int_max_str_digits() is a ValueError: bounded too.
        if rest or not isinstance(value, (str, bytes, int, float)):
            raise pickle.UnpicklingError(f"int() of a {type(value).__name__}: only plain values may be converted")
        budget.charge(len(value) if isinstance(value, (str, bytes)) else 1, "int()")
        return int(value)

    def safe_list(items: Any = ()) -> list[Any]:
        return sized("list", list, items)

    def safe_dict(items: Any = ()) -> dict[Any, Any]:
        return sized("dict", dict, items)

    def ordered_dict(items: Any = ()) -> collections.OrderedDict[Any, Any]:
        return sized("OrderedDict", collections.OrderedDict, items)

    def default_dict(factory: Any = None, *items: Any) -> collections.defaultdict[Any, Any]:
        # The factory runs only when a missing key is read; it must be one of these guarded calls.
        if factory is not None and factory not in guarded.values():
            raise pickle.UnpicklingError("a defaultdict whose factory is not int/list/dict/str")
        made: collections.defaultdict[Any, Any] = collections.defaultdict(factory)
        if items:
            made.update(sized("defaultdict", dict, items[0]))
        return made

    guarded: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): ordered_dict,
        ("collections", "defaultdict"): default_dict,
        ("builtins", "int"): safe_int,
        ("builtins", "dict"): safe_dict,
        ("builtins", "list"): safe_list,
        ("builtins", "str"): safe_str,
        ("__builtin__", "int"): safe_int,  # protocol 2 pickles written by Python 2
    }
    return guarded


class _AttributeHolder:
    """Stand-in for a pickled object: pickle's BUILD fills `__dict__`, nothing runs."""

    _budget = _Budget(MAX_BUILT_ITEMS)  # replaced per file by RestrictedUnpickler's subclass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            parts = [part or {} for part in state]
            if not all(isinstance(part, dict) for part in parts):
                raise pickle.UnpicklingError("unexpected (state, slots) of other types than dict")
            state = {**parts[0], **parts[1]}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"unexpected state of type {type(state).__name__}")
        # Charged: a pickle can BUILD the same object from the same large dict over and over.
        self._budget.charge(len(state), "object state")
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


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the classes listed above (calls guarded, see the module doc); any other global is an error."""

    def __init__(self, file: Any, *, max_items: int = MAX_BUILT_ITEMS) -> None:
        super().__init__(file)
        budget = _Budget(max_items)
        self._calls = _guarded_calls(budget)
        # Per-file subclasses carry the budget; isinstance checks against the stand-ins still hold.
        self._tokenizer = type("KerasTokenizerStandIn", (KerasTokenizerStandIn,), {"_budget": budget})
        self._wrapper = type("TokenSequencerStandIn", (TokenSequencerStandIn,), {"_budget": budget})

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _TOKENIZER_CLASSES:
            return self._tokenizer
        if key in _WRAPPER_CLASSES:
            return self._wrapper
        if key in self._calls:
            return self._calls[key]
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
        # Types first: check_word/check_index quote the value, and a shared nested one is huge.
        if not isinstance(word, str):
            raise InputFileError(f"{origin}: a word_index key is a {type(word).__name__} ({_short(word)}), not a string")
        if not isinstance(index, int):
            raise InputFileError(f"{origin}: word {word!r} has an index of type {type(index).__name__} ({_short(index)})")
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
        raise InputFileError(f"{origin}: num_words {_short(num_words)} is not a non-negative integer")
    filters = attrs.get("filters", KERAS_FILTERS)
    split = attrs.get("split", " ")
    lower = attrs.get("lower", True)
    if not isinstance(filters, str) or not isinstance(split, str) or not split or not isinstance(lower, bool):
        raise InputFileError(f"{origin}: filters/split/lower have unexpected values")
    oov = attrs.get("oov_token")
    if oov is not None and not isinstance(oov, str):
        raise InputFileError(f"{origin}: oov_token {_short(oov)} is not a string")
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
    except (MemoryError, RecursionError) as exc:  # what a crafted file can still ask of the unpickler
        raise InputFileError(
            f"{path}: refusing this pickle: loading it ran out of {'memory' if isinstance(exc, MemoryError) else 'stack'}"
        ) from exc
    max_len = None
    if isinstance(obj, TokenSequencerStandIn):
        max_len = obj.__dict__.get("max_sequence_length")
        if max_len is not None and (not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1):
            raise InputFileError(f"{path}: max_sequence_length {_short(max_len)} is not a positive integer")
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
