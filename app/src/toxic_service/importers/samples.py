"""Index sequences to verify a converted model on: real comments when given, random ones too.

Real comments exercise the model where it matters (actual word mixes and
lengths); random sequences add coverage of indexes the comments miss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toxic_service.bundle import BundleMetadata
from toxic_service.importers import InputFileError
from toxic_service.text import encode, pad, tokenize


def read_sample_texts(path: Path, limit: int) -> list[str]:
    """One comment per line (UTF-8), blank lines skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read as UTF-8 text ({exc})") from exc
    texts = [line for line in lines if line.strip()][:limit]
    if not texts:
        raise InputFileError(f"{path}: no sample comments")
    return texts


def encode_texts(texts: list[str], mapping: dict[str, int], meta: BundleMetadata) -> np.ndarray:
    return pad([encode(tokenize(t, meta.tokenizer), mapping, meta) for t in texts], meta.max_len, meta.pad_index)


def random_sequences(indexes: np.ndarray, max_len: int, count: int, seed: int = 0) -> np.ndarray:
    """Pre-padded sequences of random length (1..max_len) drawn from the vocabulary's indexes."""
    rng = np.random.default_rng(seed)
    out = np.zeros((count, max_len), dtype=np.int32)
    for row in range(count):
        length = int(rng.integers(1, max_len + 1))
        out[row, max_len - length :] = rng.choice(indexes, size=length)
    return out
