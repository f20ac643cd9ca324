"""Hashed character n-gram TF-IDF features in plain numpy: the same code at training and at serving.

A comment's features are the byte n-grams (n = 1..5) of its UTF-8 encoding
(its first MAX_BYTES bytes), case kept, each hashed with 32-bit FNV-1a (offset basis 2166136261, prime
16777619, over the n bytes) and reduced to the low `log2(width)` bits. The
hash is fixed arithmetic on bytes, so ids are the same in every process and
on every platform (Python's hash() is salted per process: never used here).
An n-gram never spans two comments of a batch.

Weights, as scikit-learn's TfidfVectorizer(sublinear_tf=True, smooth_idf=True):
tf -> 1 + log(tf), times idf = log((1 + n_docs) / (1 + df)) + 1 (0 for ids
whose df is under min_df: they are dropped), then each comment's vector is
scaled to unit L2 norm.

Speed: everything is vectorised over the batch's concatenated bytes (one
numpy pass per n, one sort to count), never a Python loop per n-gram. At
serving, n-grams whose idf is 0 (never kept in training) are dropped before
the sort: most hashed n-grams of a new comment are, and the result is the
same since transform drops them anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_N = 5
# Only a comment's first MAX_BYTES bytes of UTF-8 are counted, at training and serving alike. The model beside
# these features reads 100 tokens; a 15,000-character comment's n-grams cost ~4 ms each (64 of them 250 ms, which
# doubled the time a heavy batch holds a worker), and only 0.6 % of the insults training comments are longer.
MAX_BYTES = 2048
FNV_OFFSET = np.uint32(2166136261)
FNV_PRIME = np.uint32(16777619)


@dataclass(frozen=True)
class Counts:
    """Raw n-gram counts of a batch, CSR by comment: row i is ids[indptr[i]:indptr[i+1]] (sorted, distinct)."""

    indptr: np.ndarray  # (n_docs + 1,) int64
    ids: np.ndarray  # int64 feature ids < width
    tf: np.ndarray  # float64 raw counts

    @property
    def n_docs(self) -> int:
        return len(self.indptr) - 1

    def rows(self) -> np.ndarray:
        """The comment index of each entry."""
        return np.repeat(np.arange(self.n_docs), np.diff(self.indptr))


def check_width(width: int) -> int:
    if width < 2 or width & (width - 1) or width > 1 << 30:
        raise ValueError(f"the n-gram hash width must be a power of two between 2 and 2**30, got {width}")
    return width


def count(texts: Sequence[str], width: int, max_n: int = MAX_N, known: np.ndarray | None = None) -> Counts:
    """Hashed byte n-gram counts (n = 1..max_n) of each text; only ids where `known` (bool, (width,)) is true if given."""
    mask = np.uint32(check_width(width) - 1)
    # A cut inside a multi-byte character leaves its first bytes: n-grams over bytes need no whole characters.
    encoded = [text.encode("utf-8", "surrogatepass")[:MAX_BYTES] for text in texts]
    lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
    buf = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    # Keys doc * width + id: int32 when they fit (a request's batch at 2**20 up to 2,047 comments), as
    # sorting int32 is twice as fast as int64; the keys' values, hence the result, are the same.
    key_type = np.int32 if len(encoded) * width < 1 << 31 else np.int64
    doc = np.repeat(np.arange(len(encoded), dtype=key_type), lengths)
    # Position of each byte inside its own comment, and how many bytes follow it there.
    starts = np.cumsum(lengths) - lengths
    remaining = np.repeat(starts + lengths, lengths) - np.arange(len(buf), dtype=np.int64)
    keys = []
    h = np.full(len(buf), FNV_OFFSET, dtype=np.uint32)
    with np.errstate(over="ignore"):  # FNV's multiply is modulo 2**32 by design
        for n in range(1, max_n + 1):
            size = len(buf) - n + 1
            if size <= 0:
                break
            # FNV-1a extended by one byte: the hash of buf[i:i+n] from that of buf[i:i+n-1].
            h = (h[:size] ^ buf[n - 1 : n - 1 + size]) * FNV_PRIME
            inside = remaining[:size] >= n  # the n-gram ends inside the comment it starts in
            ids = (h & mask).astype(key_type)
            if known is not None:
                inside &= known[ids]
            keys.append(doc[:size][inside] * key_type(width) + ids[inside])
    all_keys = np.concatenate(keys) if keys else np.zeros(0, dtype=key_type)
    unique, tf = np.unique(all_keys, return_counts=True)
    unique = unique.astype(np.int64)
    rows = unique // width
    indptr = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(encoded)), out=indptr[1:])
    return Counts(indptr=indptr, ids=unique - rows * width, tf=tf.astype(np.float64))


def fit_idf(counts: Counts, width: int, min_df: int = 1) -> np.ndarray:
    """(width,) float32 smooth idf learned from `counts`; 0 for ids seen in fewer than `min_df` comments."""
    df = np.bincount(counts.ids, minlength=width)  # ids are distinct within a row: a count of comments
    idf = np.log((1.0 + counts.n_docs) / (1.0 + df)) + 1.0
    idf[df < max(min_df, 1)] = 0.0
    return idf.astype(np.float32)


@dataclass(frozen=True)
class Features:
    """TF-IDF rows, CSR by comment (ids with idf 0 removed), each row of unit L2 norm (or empty)."""

    indptr: np.ndarray
    ids: np.ndarray
    values: np.ndarray  # float64

    @property
    def n_docs(self) -> int:
        return len(self.indptr) - 1


def transform(counts: Counts, idf: np.ndarray) -> Features:
    weight = (1.0 + np.log(counts.tf)) * idf[counts.ids]
    keep = weight != 0.0
    rows = counts.rows()[keep]
    ids, weight = counts.ids[keep], weight[keep]
    norms = np.sqrt(np.bincount(rows, weights=weight * weight, minlength=counts.n_docs))
    values = weight / norms[rows]
    indptr = np.zeros(counts.n_docs + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=counts.n_docs), out=indptr[1:])
    return Features(indptr=indptr, ids=ids, values=values)


def featurise(texts: Sequence[str], idf: np.ndarray, known: np.ndarray | None = None) -> Features:
    """Serving's one call: counts then TF-IDF with the trained idf (its length is the hash width).

    `known` is `idf != 0`, passed in by a caller that scores often (computing it is a pass over `width`)."""
    return transform(count(texts, len(idf), known=idf != 0 if known is None else known), idf)


def linear(features: Features, coef: np.ndarray, intercept: float) -> np.ndarray:
    """(n_docs,) float64 decision values coef . x + intercept."""
    rows = np.repeat(np.arange(features.n_docs), np.diff(features.indptr))
    dot = np.bincount(rows, weights=features.values * coef[features.ids], minlength=features.n_docs)
    return dot + intercept


def decision(texts: Sequence[str], idf: np.ndarray, coef: np.ndarray, intercept: float, known: np.ndarray) -> np.ndarray:
    """linear(featurise(texts, idf), coef, intercept) in one pass (serving's hot path): the row norm divides
    the dot product once per comment instead of every value; `known` is `idf != 0`."""
    counts = count(texts, len(idf), known=known)
    rows = counts.rows()
    weight = (1.0 + np.log(counts.tf)) * idf[counts.ids]
    dot = np.bincount(rows, weights=weight * coef[counts.ids], minlength=counts.n_docs)
    norm = np.sqrt(np.bincount(rows, weights=weight * weight, minlength=counts.n_docs))
    # An empty comment (or one of only unknown n-grams) has no features: its decision is the intercept. The output
    # is float zeros, not zeros_like(dot): with no known n-gram in the whole call, bincount gives int zeros.
    return np.divide(dot, norm, out=np.zeros(counts.n_docs), where=norm > 0) + intercept


def decisions(
    texts: Sequence[str],
    idf: np.ndarray,
    coef: np.ndarray,
    intercept: np.ndarray,
    known: np.ndarray,
    sparse_rows: Sequence[int] = (),
    sparse_support: np.ndarray | None = None,
) -> np.ndarray:
    """(n_docs, k) `decision` of k LRs at once, row j with its own idf[j] and coef[j] (all (k, width)): the
    n-grams are counted once (the sort is most of the cost); `known` is where any idf row is not 0.
    Rows in `sparse_rows` weigh only ids where `sparse_support` is true (a bias-mitigation row knows ~3,000
    of 120,000): their n-grams are picked out once, with one boolean look-up, before their arithmetic."""
    idf, coef = np.atleast_2d(idf), np.atleast_2d(coef)
    counts = count(texts, idf.shape[1], known=known)
    every = (counts.ids, counts.rows(), 1.0 + np.log(counts.tf))
    picked = every
    if len(sparse_rows) and sparse_support is not None:
        pick = sparse_support[counts.ids]
        picked = (every[0][pick], every[1][pick], every[2][pick])
    out = np.empty((counts.n_docs, len(idf)))
    for j in range(len(idf)):
        ids, rows, log_tf = picked if j in sparse_rows else every
        weight = log_tf * idf[j][ids]
        dot = np.bincount(rows, weights=weight * coef[j][ids], minlength=counts.n_docs)
        norm = np.sqrt(np.bincount(rows, weights=weight * weight, minlength=counts.n_docs))
        out[:, j] = np.divide(dot, norm, out=np.zeros(counts.n_docs), where=norm > 0) + np.atleast_1d(intercept)[j]
    return out
