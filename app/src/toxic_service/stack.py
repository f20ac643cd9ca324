"""The stacked labels in plain numpy: per label, n-gram LR + the model's own logits -> that label's score.

For stacked label k: score_k = sigmoid(a_k . ((f_k - mean_k) / std_k) + b_k),
with f_k = [n-gram LR decision of row k on the text, logit of each of the
model's outputs]. Row k's n-gram LR is toxic_service.ngrams' TF-IDF features
with idf row k, times `ngram_coef[k]` plus `ngram_intercept[k]`; all rows
share one hash width, so a comment's n-grams are counted once for all labels.
Every array has one row per stacked label, in the order of the bundle's
metadata `stack.labels` (a file of one label may hold 1-D arrays: the format
before several labels). Everything is in one .npz (no pickle: np.load with
allow_pickle=False), written by `toxic-service train-stack` and named, with
its sha256, in the bundle's metadata (bundle.py owns that).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toxic_service import ngrams
from toxic_service.errors import BundleError

# Scores are float32 probabilities: 1 - 1e-7 is the last step below 1.0, so logits stay finite.
_EPS = 1e-7
_ARRAYS = ("idf", "ngram_coef", "ngram_intercept", "mean", "std", "coef", "intercept")


def logits(probabilities: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def stack_inputs(ngram_decision: np.ndarray, model_scores: np.ndarray) -> np.ndarray:
    """(n, 1 + n_labels) stacker inputs: the n-gram LR decision, then the logit of each model output."""
    return np.column_stack([np.asarray(ngram_decision, dtype=np.float64), logits(model_scores)])


@dataclass(frozen=True)
class StackModel:
    idf: np.ndarray  # (k, width) float32; its length is the hash width; one row per stacked label
    ngram_coef: np.ndarray  # (k, width) float32
    ngram_intercept: np.ndarray  # (k,)
    mean: np.ndarray  # (k, 1 + n_labels) standardisation of the stacker inputs
    std: np.ndarray
    coef: np.ndarray  # (k, 1 + n_labels) stacker weights on the standardised inputs
    intercept: np.ndarray  # (k,)

    def __post_init__(self) -> None:
        # Accept one label's 1-D arrays (and scalars): every other method sees (k, ...) rows.
        for name in _ARRAYS:
            ndim = 1 if name.endswith("intercept") else 2
            value = np.asarray(getattr(self, name))
            object.__setattr__(self, name, value.reshape((1,) * (ndim - value.ndim) + value.shape))
        # Once per load, not once per request: the ids any row knows (an n-gram no row weighs is not counted).
        nonzero = self.idf != 0
        object.__setattr__(self, "_known", nonzero.any(axis=0))
        # Rows that weigh under a tenth of the known ids (bias-mitigation rows) get their n-grams picked out first.
        known_ids = int(self._known.sum())  # type: ignore[attr-defined]
        sparse = tuple(j for j, row in enumerate(nonzero) if row.sum() * 10 < known_ids)
        object.__setattr__(self, "_sparse", (sparse, nonzero[list(sparse)].any(axis=0) if sparse else None))

    @property
    def n_stacked(self) -> int:
        return len(self.idf)

    def ngram_decision(self, texts: Sequence[str]) -> np.ndarray:
        """(n, k) n-gram LR decisions, one column per stacked label."""
        return ngrams.decisions(
            texts, self.idf, self.ngram_coef, self.ngram_intercept, self._known, *self._sparse  # type: ignore[attr-defined]
        )

    def combine(self, ngram_decision: np.ndarray, model_scores: np.ndarray) -> np.ndarray:
        """(n, k) stacked scores from (n, k) decisions and the model's (n, n_labels) scores."""
        ngram_decision = np.asarray(ngram_decision, dtype=np.float64).reshape(len(model_scores), -1)
        model_logits = logits(model_scores)
        out = np.empty((len(model_scores), self.n_stacked))
        for k in range(self.n_stacked):
            z = (np.column_stack([ngram_decision[:, k], model_logits]) - self.mean[k]) / self.std[k]
            out[:, k] = 1.0 / (1.0 + np.exp(-(z @ self.coef[k] + self.intercept[k])))
        return out

    def score(self, texts: Sequence[str], model_scores: np.ndarray) -> np.ndarray:
        """(n, k) float64 stacked scores for `texts`, given the model's (n, n_labels) scores for them."""
        return self.combine(self.ngram_decision(texts), model_scores)

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        np.savez_compressed(
            out,
            idf=self.idf.astype(np.float32),
            ngram_coef=self.ngram_coef.astype(np.float32),
            ngram_intercept=self.ngram_intercept.astype(np.float64),
            mean=self.mean.astype(np.float64),
            std=self.std.astype(np.float64),
            coef=self.coef.astype(np.float64),
            intercept=self.intercept.astype(np.float64),
        )
        return out.getvalue()


def load_stack(path: Path, n_labels: int, n_stacked: int = 1) -> StackModel:
    """Read a verified stack file of `n_stacked` rows; BundleError naming the file for any defect."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [name for name in _ARRAYS if name not in npz.files]
            if missing:
                raise BundleError(f"{path}: missing array(s) {', '.join(missing)}")
            arrays = {name: npz[name] for name in _ARRAYS}
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a readable .npz stack file ({exc})") from exc
    if n_stacked == 1 and arrays["idf"].ndim == 1:  # the one-label format: 1-D rows, scalar intercepts
        shapes = {"idf": 2, "ngram_coef": 2, "mean": 2, "std": 2, "coef": 2, "ngram_intercept": 1, "intercept": 1}
        arrays = {name: a.reshape((1,) * (shapes[name] - a.ndim) + a.shape) for name, a in arrays.items()}
    idf, ngram_coef = arrays["idf"], arrays["ngram_coef"]
    width = idf.shape[-1] if idf.ndim else 0
    try:
        ngrams.check_width(width)
    except ValueError as exc:
        raise BundleError(f"{path}: idf: {exc}") from exc
    if idf.shape != (n_stacked, width) or ngram_coef.shape != (n_stacked, width):
        raise BundleError(
            f"{path}: idf and ngram_coef must both have shape ({n_stacked}, {width}) for {n_stacked} stacked label(s)"
        )
    k = 1 + n_labels
    for name in ("mean", "std", "coef"):
        if arrays[name].shape != (n_stacked, k):
            raise BundleError(
                f"{path}: {name} has shape {arrays[name].shape}, expected ({n_stacked}, {k}) for {n_labels} labels"
            )
    for name in ("ngram_intercept", "intercept"):
        if arrays[name].shape != (n_stacked,):
            raise BundleError(f"{path}: {name} has shape {arrays[name].shape}, expected ({n_stacked},)")
    if not (arrays["std"] > 0).all():
        raise BundleError(f"{path}: std must be positive")
    if not all(np.isfinite(arrays[name]).all() for name in _ARRAYS):
        raise BundleError(f"{path}: holds a value that is not finite")
    return StackModel(
        idf=idf.astype(np.float32, copy=False),  # 4 MB per row at 2**20: no second copy per worker
        ngram_coef=ngram_coef.astype(np.float32, copy=False),
        ngram_intercept=arrays["ngram_intercept"].astype(np.float64),
        mean=arrays["mean"].astype(np.float64),
        std=arrays["std"].astype(np.float64),
        coef=arrays["coef"].astype(np.float64),
        intercept=arrays["intercept"].astype(np.float64),
    )
