"""Load a user's Keras model, rebuild it so it converts to a servable TFLite graph, and verify.

Why a rebuild: an LSTM as saved converts to a TFLite graph whose batch size
is fixed (the TensorList loop pins it), so LiteRT cannot resize it to a
request's batch. The same layers with `unroll=True` convert to plain built-in
ops with input [-1, max_len]. The rebuild keeps every weight, and turns a
float input that feeds only Embedding layers into int32 (word indexes).

Why tf-keras (TF_USE_LEGACY_KERAS=1): Keras 2 files such as tox-block's
(Keras 2.2.4) do not deserialize in Keras 3, and Keras 3's `hard_sigmoid` is
x/6+0.5 where Keras 2's was 0.2x+0.5 (clipped): rebuilding in Keras 3 loads
and is silently wrong by up to 0.065. tf-keras keeps Keras 2's functions.

`verify` compares the converted model with the source model as loaded (not
the rebuild) on real inputs; `model import` refuses to write anything when
they differ by more than the tolerance.
"""

from __future__ import annotations

import copy
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toxic_service.errors import BundleError
from toxic_service.importers import InputFileError
from toxic_service.importers.model_config import check_model_file, read_h5_attribute, read_zip_member

RECURRENT_LAYERS = ("LSTM", "GRU", "SimpleRNN", "CuDNNLSTM", "CuDNNGRU")
DEFAULT_TOLERANCE = 1e-4


def keras_flavour(path: Path) -> str:
    """ "legacy" (Keras 2: load with tf-keras) or "keras3", read from the file without TensorFlow."""
    import json

    path = Path(path)
    if zipfile.is_zipfile(path):  # .keras: a zip with metadata.json
        try:
            version = str(json.loads(read_zip_member(path, "metadata.json")).get("keras_version", ""))
        except (ValueError, RecursionError, AttributeError) as exc:
            raise InputFileError(f"{path}: not a Keras .keras archive ({exc})") from exc
    else:
        raw = read_h5_attribute(path, "keras_version") or b""
        version = raw.decode() if isinstance(raw, bytes) else str(raw)
    return "keras3" if version.startswith("3") else "legacy"


def keras_module(flavour: str) -> Any:
    """tf_keras (with TensorFlow told to use it, before TensorFlow's import) or Keras 3."""
    import sys

    if flavour == "keras3":
        if os.environ.get("TF_USE_LEGACY_KERAS") in ("1", "true", "True"):
            raise BundleError("a Keras 3 model cannot be converted with TF_USE_LEGACY_KERAS=1 set; unset it")
        import keras

        return keras
    if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") not in ("1", "true", "True"):
        # TensorFlow picks its Keras when first asked; tf_keras models need the legacy one.
        raise BundleError("TensorFlow was imported before TF_USE_LEGACY_KERAS=1 was set; run this in a fresh process")
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    try:
        import tf_keras
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BundleError("Keras 2 models need TensorFlow and tf-keras: pip install 'toxic-service[keras]'") from exc
    return tf_keras


def load_keras_model(path: Path) -> Any:
    """A Keras 2 .h5 (through tf-keras) or a Keras 3 .keras/.h5, loaded without compiling (we only predict)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    if path.suffix.lower() not in (".h5", ".hdf5", ".keras"):
        raise InputFileError(f"{path}: expected a Keras model file (.h5, .hdf5 or .keras)")
    # Before Keras sees the file: loading builds whatever classes it names, Lambda code included.
    check_model_file(path)
    flavour = keras_flavour(path)
    module = keras_module(flavour)
    try:
        return module.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types (OSError, ValueError, TypeError, KeyError...)
        raise InputFileError(f"{path}: cannot load as a Keras model ({flavour}: {type(exc).__name__}: {exc})") from exc


def _recurrent_layers(node: Any) -> Iterator[dict[str, Any]]:
    """Every recurrent layer config inside a model config (Bidirectional's inner layers included)."""
    if isinstance(node, dict):
        if node.get("class_name") in RECURRENT_LAYERS and isinstance(node.get("config"), dict):
            yield node
        for value in node.values():
            yield from _recurrent_layers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _recurrent_layers(value)


def _unroll(node: Any) -> int:
    """Set unroll=True on every recurrent layer config inside `node`; returns how many."""
    count = 0
    for found in _recurrent_layers(node):
        layer = found["config"]
        layer["unroll"] = True
        if "implementation" in layer:
            # Inference only: dropout never applies, and without recurrent_dropout Keras accepts
            # implementation 2, one matmul per step for all gates instead of one per gate.
            layer.update(implementation=2, dropout=0.0, recurrent_dropout=0.0)
        count += 1
    return count


def _use_one_matmul_lstm(node: Any) -> dict[str, Any]:
    """Point every LSTM config at OneMatmulLSTM (tf-keras); returns the custom_objects for from_config."""
    from toxic_service.importers.one_matmul_lstm import one_matmul_lstm_class

    name = "OneMatmulLSTM"
    for found in _recurrent_layers(node):
        if found["class_name"] == "LSTM":
            # tf-keras looks a class up by registered_name, then by module: both must name ours.
            found.update(class_name=name, registered_name=name, module=None)
    return {name: one_matmul_lstm_class()}


@dataclass(frozen=True)
class ModelShape:
    max_len: int
    n_outputs: int


def model_shape(model: Any) -> ModelShape:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise BundleError(f"the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; expected one of each")
    in_shape = tuple(model.inputs[0].shape)
    out_shape = tuple(model.outputs[0].shape)
    if len(in_shape) != 2 or in_shape[1] is None:
        raise BundleError(f"the model input has shape {in_shape}; expected (batch, max_len) with a fixed max_len")
    if len(out_shape) != 2 or out_shape[1] is None:
        raise BundleError(f"the model output has shape {out_shape}; expected (batch, n_labels)")
    return ModelShape(max_len=int(in_shape[1]), n_outputs=int(out_shape[1]))


def rebuild_for_tflite(model: Any, *, one_matmul: bool = True) -> Any:
    """The same model with recurrent layers unrolled and an int32 index input; weights copied.

    With `one_matmul`, tf-keras LSTM layers are rebuilt as OneMatmulLSTM (one matmul per step, see
    one_matmul_lstm): for the conversion only, since a saved model would need that class to load.
    """
    config = copy.deepcopy(model.get_config())
    _unroll(config)
    layers = config.get("layers") or []
    input_layers = [layer for layer in layers if layer.get("class_name") == "InputLayer"]
    embedding_first = any(layer.get("class_name") == "Embedding" for layer in layers[:2])
    if embedding_first:
        for layer in input_layers:
            layer["config"]["dtype"] = "int32"
    custom_objects = {}
    if one_matmul and type(model).__module__.startswith("tf_keras"):
        custom_objects = _use_one_matmul_lstm(config)
    try:
        # Functional or Sequential alike; Bidirectional builds its layers through custom_objects too.
        rebuilt = model.__class__.from_config(config, custom_objects=custom_objects)
        rebuilt.set_weights(model.get_weights())
    except Exception as exc:
        raise BundleError(f"cannot rebuild the model for conversion ({type(exc).__name__}: {exc})") from exc
    return rebuilt


def keras_to_tflite(model: Any) -> bytes:
    """Convert with built-in ops only, so LiteRT and tflite-runtime (EL7) both run the result."""
    return to_tflite(model)


def to_tflite(model: Any, *, quantize: bool = False) -> bytes:
    """TFLite bytes, built-in ops only; `quantize` stores weights as int8 (dynamic range)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return bytes(converter.convert())


def keras_predict(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Source-model scores through TensorFlow's graph mode (eager LSTM steps are ~100x slower)."""
    dtype = model.inputs[0].dtype
    dtype = np.float32 if dtype is None else np.dtype(getattr(dtype, "as_numpy_dtype", dtype))
    return np.asarray(model.predict(x.astype(dtype), batch_size=batch_size, verbose=0), dtype=np.float32)


def tflite_runtime(tflite_bytes: bytes) -> Any:
    """The serving runtime (LiteRT: buckets, chunks, both input forms) on converted bytes."""
    from toxic_service.runtime.litert import LiteRTRuntime

    return LiteRTRuntime(model_content=tflite_bytes, num_threads=2)


def tflite_predict(tflite_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Scores from the converted model through the serving runtime."""
    runtime = tflite_runtime(tflite_bytes)
    return runtime.predict(x.astype(runtime.input_dtype))


def verify(source: Any, tflite_bytes: bytes, x: np.ndarray, *, tolerance: float = DEFAULT_TOLERANCE) -> float:
    """Largest |TFLite - Keras| over `x`; BundleError when it exceeds `tolerance`."""
    runtime = tflite_runtime(tflite_bytes)
    if not runtime.resizable or np.dtype(runtime.input_dtype) != np.int32:
        batch = "any batch size" if runtime.resizable else f"a fixed batch of {runtime.buckets[0]}"
        raise BundleError(
            f"the converted model takes {np.dtype(runtime.input_dtype).name} indexes in {batch}; "
            "the service needs int32 indexes in any batch size"
        )
    expected = keras_predict(source, x)
    got = runtime.predict(x.astype(np.int32))
    if expected.shape != got.shape:
        raise BundleError(f"the converted model gives shape {got.shape}, the source {expected.shape}")
    diff = float(np.max(np.abs(expected - got)))
    if not np.isfinite(diff) or diff > tolerance:
        raise BundleError(
            f"the converted model differs from the source model by {diff:.3g} (tolerance {tolerance:g}) on "
            f"{len(x)} sample inputs; nothing was written"
        )
    return diff
