"""The tokenizer, identical at training and serving time, and no TensorFlow.

Each step reproduces a Keras function exactly (tests compare against Keras):
    tokenize  ~ keras.preprocessing.text.text_to_word_sequence
    encode    ~ Tokenizer.texts_to_sequences (num_words cut-off, oov token)
    pad       ~ keras.utils.pad_sequences with its defaults (pre/pre, int32)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

import numpy as np

from toxic_service.bundle import BundleMetadata, TokenizerConfig


@lru_cache(maxsize=16)
def _translation(filters: str, split: str) -> dict[int, str]:
    return str.maketrans(dict.fromkeys(filters, split))


def tokenize(text: str, config: TokenizerConfig) -> list[str]:
    """Words of `text`: lowercased, every filter character turned into `split`, split, empties dropped.

    Like Keras, only `split` separates words: a character such as U+00A0 that
    is neither in `filters` nor `split` stays inside a word.
    """
    if config.lower:
        text = text.lower()
    text = text.translate(_translation(config.filters, config.split))
    return [word for word in text.split(config.split) if word]


def encode(words: Iterable[str], mapping: Mapping[str, int], meta: BundleMetadata) -> list[int]:
    """Indexes for `words`. Unknown words, and words at or past `num_words`, become
    `oov_index` when the bundle has one and are dropped when it does not (Keras)."""
    oov = meta.oov_index
    # Keras tests `if num_words and i >= num_words`: 0 and None both mean no cut-off.
    limit = meta.num_words or None
    out: list[int] = []
    for word in words:
        index = mapping.get(word)
        if index is not None and (limit is None or index < limit):
            out.append(index)
        elif oov is not None:
            out.append(oov)
    return out


def pad(sequences: Sequence[Sequence[int]], max_len: int, pad_index: int = 0) -> np.ndarray:
    """(n, max_len) int32: short sequences padded at the front, long ones keep their last `max_len`."""
    out = np.full((len(sequences), max_len), pad_index, dtype=np.int32)
    for row, seq in enumerate(sequences):
        if not len(seq):
            continue
        tail = seq[-max_len:]
        out[row, max_len - len(tail) :] = tail
    return out
