"""The Keras/TensorFlow runtime: for models LiteRT cannot run, at ~600 MB per worker.

TensorFlow is imported here only, when the runtime is created (after the
fork). The model runs through one `tf.function` with a (None, max_len)
signature: traced once, no `predict()` per request (50+ ms of overhead) and
no eager call (an LSTM in eager mode steps in Python).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from toxic_service.errors import BundleError, ConfigurationError
from toxic_service.runtime.base import checked_batch


def _load_model(path: Path) -> Any:
    # A bundle's model.keras is input too: read its config before Keras deserialises anything
    # (a Lambda or custom layer would run code stored in the file).
    from toxic_service.importers.model_config import UnsafeModelError, check_model_file

    try:
        check_model_file(path)
    except UnsafeModelError as exc:
        raise BundleError(str(exc)) from exc
    import keras

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as keras3_error:  # noqa: BLE001 - any failure: try the Keras 2 loader before giving up
        try:
            import tf_keras
        except ImportError:
            raise BundleError(f"{path}: Keras cannot load it ({keras3_error})") from keras3_error
        try:
            return tf_keras.models.load_model(path, compile=False)
        except Exception as keras2_error:  # noqa: BLE001
            raise BundleError(
                f"{path}: neither Keras 3 ({keras3_error}) nor tf-keras ({keras2_error}) can load it"
            ) from keras2_error


class KerasRuntime:
    def __init__(self, model_path: Path | str, *, num_threads: int = 1) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            import tensorflow as tf
        except ImportError:
            raise ConfigurationError("runtime 'keras' needs TensorFlow: install toxic-service[keras]") from None
        try:
            tf.config.threading.set_intra_op_parallelism_threads(num_threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TensorFlow already initialised in this process (another thread's runtime): keep its setting
        self.model_path = Path(model_path)
        model = _load_model(self.model_path)
        shape = tuple(model.inputs[0].shape)
        if len(shape) != 2 or shape[1] is None:
            raise BundleError(f"{self.model_path}: input has shape {shape}, expected (batch, max_len)")
        self.max_len = int(shape[1])
        self.n_outputs = int(model.outputs[0].shape[-1])
        input_dtype = model.inputs[0].dtype
        self._tf = tf
        self._model = model

        @tf.function(input_signature=[tf.TensorSpec([None, self.max_len], tf.int32)])
        def run(x: Any) -> Any:
            return model(tf.cast(x, input_dtype), training=False)

        self._run = run

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = checked_batch(batch, self.max_len)
        if len(batch) == 0:
            return np.zeros((0, self.n_outputs), dtype=np.float32)
        return np.asarray(self._run(self._tf.constant(batch, dtype=self._tf.int32)), dtype=np.float32)

    def close(self) -> None:
        self._model = None
