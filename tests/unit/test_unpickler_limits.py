"""The restricted tokenizer unpickler is bounded: memo-shared bombs, repeated copies and huge lengths are refused.

The pickles are written opcode by opcode (pickle's own dumps would not share
objects this way), each in the shape a crafted file would have.
"""

from __future__ import annotations

import io
import pickle
import time
from pathlib import Path

import pytest
from toxic_service.importers import InputFileError
from toxic_service.importers.keras_tokenizer import RestrictedUnpickler, load_keras_tokenizer, load_tokenizer_pickle

LEVELS = 24  # 2**24 copies: str() of it is about 100 MB


def _str_bomb(levels: int) -> bytes:
    """Protocol 4: level k+1 is a list of level k twice (memo refs), then builtins.str(top) by REDUCE."""
    data = b"\x80\x04]\x94"  # PROTO 4, EMPTY_LIST, MEMOIZE (memo 0)
    for k in range(levels):
        data += b"(h" + bytes([k]) + b"h" + bytes([k]) + b"l\x94"  # MARK, BINGET k, BINGET k, LIST, MEMOIZE
    return data + b"cbuiltins\nstr\nh" + bytes([levels]) + b"\x85R."  # GLOBAL, BINGET top, TUPLE1, REDUCE, STOP


def test_the_bomb_is_real_with_a_plain_unpickler():
    # Doubling per level, as reported: the same bytes at 14 and 15 levels through pickle.loads.
    small, bigger = (len(pickle.loads(_str_bomb(n))) for n in (14, 15))
    assert bigger == 2 * small + 4
    assert len(_str_bomb(LEVELS)) < 200  # well under a kilobyte asks for 6 * 2**24 - 4 characters


def test_str_of_shared_nested_lists_is_refused_quickly(tmp_path):
    path = tmp_path / "bomb.pkl"
    path.write_bytes(_str_bomb(LEVELS))
    started = time.perf_counter()
    with pytest.raises(InputFileError, match=r"bomb\.pkl: not a Keras tokenizer pickle \(str\(\) of a list"):
        load_keras_tokenizer(path)
    print(f"{len(path.read_bytes())}-byte str() bomb ({LEVELS} levels) refused in {time.perf_counter() - started:.4f} s")


def _repeated_copies(copies: int, width: int) -> bytes:
    """A list of `width` ints, then `copies` calls of builtins.list on it, collected in one list."""
    data = b"\x80\x04cbuiltins\nlist\n\x94(" + b"K\x01" * width + b"l\x94"  # memo 0: list, memo 1: the list
    data += b"("
    data += b"h\x00h\x01\x85R" * copies  # BINGET list, BINGET data, TUPLE1, REDUCE
    return data + b"l."


def test_repeated_copies_are_charged_to_the_budget():
    data = _repeated_copies(copies=50, width=1000)
    assert len(pickle.loads(data)) == 50  # the plain unpickler builds 50,000 items
    assert len(RestrictedUnpickler(io.BytesIO(data), max_items=50_000).load()) == 50
    with pytest.raises(pickle.UnpicklingError, match="list\\(\\) would build more than 49999 items"):
        RestrictedUnpickler(io.BytesIO(data), max_items=49_999).load()


def test_repeated_object_state_is_charged_to_the_budget():
    # One Tokenizer stand-in, BUILD from the same 1000-entry dict 5 times.
    entries = (str(i).encode() for i in range(1000))
    state = b"}\x94(" + b"".join(b"\x8c" + bytes([len(k)]) + k + b"K\x01" for k in entries) + b"u"
    data = b"\x80\x04ckeras_preprocessing.text\nTokenizer\n)\x81" + state + b"b" + b"h\x00b" * 4 + b"."
    assert len(pickle.loads(data.replace(b"keras_preprocessing.text\nTokenizer", b"argparse\nNamespace")).__dict__) == 1000
    assert len(RestrictedUnpickler(io.BytesIO(data), max_items=5000).load().__dict__) == 1000
    with pytest.raises(pickle.UnpicklingError, match="object state would build more than 4999 items"):
        RestrictedUnpickler(io.BytesIO(data), max_items=4999).load()


def test_memory_error_becomes_a_refusal_naming_the_file(tmp_path):
    path = tmp_path / "huge.pkl"
    path.write_bytes(b"\x80\x04\x8e" + (1 << 62).to_bytes(8, "little") + b".")  # BINBYTES8 of 4 EiB
    with pytest.raises(InputFileError, match=r"huge\.pkl: refusing this pickle: loading it ran out of memory"):
        load_tokenizer_pickle(path)


def test_a_nested_value_in_an_error_message_is_shortened(tmp_path):
    # num_words is the 24-level shared list: a plain repr in the message would be the bomb again.
    top = bytes([LEVELS])
    data = _str_bomb(LEVELS)[: -len(b"cbuiltins\nstr\nh" + top + b"\x85R.")]
    data += b"0ckeras_preprocessing.text\nTokenizer\n)\x81}(\x8c\x0aword_index}\x8c\x01aK\x01s\x8c\x09num_wordsh" + top
    data += b"ub."
    path = tmp_path / "nested.pkl"
    path.write_bytes(data)
    started = time.perf_counter()
    with pytest.raises(InputFileError, match="num_words .* is not a non-negative integer") as info:
        load_keras_tokenizer(path)
    assert len(str(info.value)) < 500
    print(f"nested num_words refused in {time.perf_counter() - started:.4f} s")


def test_real_tox_block_pickle_still_loads():
    path = Path(__file__).resolve().parents[2] / ".cache/assets/src/encoder_0.1.2.pkl"
    if not path.is_file():
        pytest.skip(f"{path} not built (run `make assets`)")
    started = time.perf_counter()
    spec = load_keras_tokenizer(path)
    print(f"tox-block's {path.stat().st_size}-byte pickle loaded in {time.perf_counter() - started:.2f} s")
    assert spec.num_words == 20000 and len(spec.pairs()) == 19999
