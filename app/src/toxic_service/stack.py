"""The stacked label in plain numpy: n-gram LR + the model's own logits -> one label's score.

score = sigmoid(a . ((f - mean) / std) + b), with f = [n-gram LR decision on
the text, logit of each of the model's outputs]. The n-gram LR is
toxic_service.ngrams' TF-IDF features times `ngram_coef` plus
`ngram_intercept`. Everything is in one .npz (no pickle: np.load with
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
    idf: np.ndarray  # (width,) float32; its length is the hash width
    ngram_coef: np.ndarray  # (width,) float32
    ngram_intercept: float
    mean: np.ndarray  # (1 + n_labels,) standardisation of the stacker inputs
    std: np.ndarray
    coef: np.ndarray  # (1 + n_labels,) stacker weights on the standardised inputs
    intercept: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "_known", self.idf != 0)  # once per load, not once per request

    def ngram_decision(self, texts: Sequence[str]) -> np.ndarray:
        return ngrams.decision(texts, self.idf, self.ngram_coef, self.ngram_intercept, self._known)  # type: ignore[attr-defined]

    def combine(self, ngram_decision: np.ndarray, model_scores: np.ndarray) -> np.ndarray:
        z = (stack_inputs(ngram_decision, model_scores) - self.mean) / self.std
        return 1.0 / (1.0 + np.exp(-(z @ self.coef + self.intercept)))

    def score(self, texts: Sequence[str], model_scores: np.ndarray) -> np.ndarray:
        """(n,) float64 stacked scores for `texts`, given the model's (n, n_labels) scores for them."""
        return self.combine(self.ngram_decision(texts), model_scores)

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        np.savez_compressed(
            out,
            idf=self.idf.astype(np.float32),
            ngram_coef=self.ngram_coef.astype(np.float32),
            ngram_intercept=np.float64(self.ngram_intercept),
            mean=self.mean.astype(np.float64),
            std=self.std.astype(np.float64),
            coef=self.coef.astype(np.float64),
            intercept=np.float64(self.intercept),
        )
        return out.getvalue()


def load_stack(path: Path, n_labels: int) -> StackModel:
    """Read a verified stack file; BundleError naming the file for any defect."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [name for name in _ARRAYS if name not in npz.files]
            if missing:
                raise BundleError(f"{path}: missing array(s) {', '.join(missing)}")
            arrays = {name: npz[name] for name in _ARRAYS}
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a readable .npz stack file ({exc})") from exc
    idf, ngram_coef = arrays["idf"], arrays["ngram_coef"]
    width = len(idf)
    try:
        ngrams.check_width(width)
    except ValueError as exc:
        raise BundleError(f"{path}: idf: {exc}") from exc
    if idf.shape != (width,) or ngram_coef.shape != (width,):
        raise BundleError(f"{path}: idf and ngram_coef must both have shape ({width},)")
    k = 1 + n_labels
    for name in ("mean", "std", "coef"):
        if arrays[name].shape != (k,):
            raise BundleError(f"{path}: {name} has shape {arrays[name].shape}, expected ({k},) for {n_labels} labels")
    if not (arrays["std"] > 0).all():
        raise BundleError(f"{path}: std must be positive")
    if not all(np.isfinite(arrays[name]).all() for name in _ARRAYS):
        raise BundleError(f"{path}: holds a value that is not finite")
    return StackModel(
        idf=idf.astype(np.float32, copy=False),  # 4 MB each at 2**20: no second copy per worker
        ngram_coef=ngram_coef.astype(np.float32, copy=False),
        ngram_intercept=float(arrays["ngram_intercept"]),
        mean=arrays["mean"].astype(np.float64),
        std=arrays["std"].astype(np.float64),
        coef=arrays["coef"].astype(np.float64),
        intercept=float(arrays["intercept"]),
    )
