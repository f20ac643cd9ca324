"""The inference runtime interface every backend implements.

A runtime is created after gunicorn forks (TensorFlow state must never cross a
fork) and is called with a whole batch: one model invocation per request.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class InferenceRuntime(Protocol):
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """int32 array (n, max_len) -> float32 array (n, n_labels) of sigmoid scores."""

    def close(self) -> None: ...


def checked_batch(batch: np.ndarray, max_len: int) -> np.ndarray:
    """The batch as a 2-D array of `max_len` columns, or ValueError saying what it is instead."""
    batch = np.asarray(batch)
    if batch.ndim != 2 or batch.shape[1] != max_len:
        raise ValueError(f"expected an array of shape (n, {max_len}), got {batch.shape}")
    return batch
