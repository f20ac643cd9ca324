"""Refuse a Keras model file that could run code when loaded, by reading its config first.

A Keras file names the classes to build; loading one builds them. A `Lambda`
layer carries Python (tf-keras stores its bytecode, and tf-keras's .h5 loader
runs it whatever `safe_mode` says), and a custom class name makes Keras look up
code we did not write. So before Keras or TensorFlow is imported, this module
reads the model config (the `model_config` attribute of an .h5, `config.json`
in a .keras zip) as plain JSON, walks every nested object (models inside
models, Bidirectional/TimeDistributed wrappers' inner layers, RNN cells,
initializers, regularizers...) and refuses the file unless every class is on
the allow-list below: built-in classes that are data, not code. Anything not
listed is refused, so a class added to Keras later is refused until someone
checks it and lists it here.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toxic_service.importers import InputFileError

# Built-in layers and models whose config is data only (no function, no custom class).
LAYER_CLASSES = frozenset(
    {
        "Model", "Functional", "Sequential", "InputLayer",
        "Embedding", "Dense", "EinsumDense", "Activation", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
        "GaussianDropout", "GaussianNoise", "AlphaDropout", "ActivityRegularization", "Masking",
        "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "ThresholdedReLU",
        "LSTM", "GRU", "SimpleRNN", "CuDNNLSTM", "CuDNNGRU", "RNN", "LSTMCell", "GRUCell", "SimpleRNNCell",
        "StackedRNNCells", "Bidirectional", "TimeDistributed",
        "Conv1D", "SeparableConv1D", "DepthwiseConv1D", "Conv2D", "SeparableConv2D", "DepthwiseConv2D",
        "MaxPooling1D", "AveragePooling1D", "GlobalMaxPooling1D", "GlobalAveragePooling1D",
        "MaxPooling2D", "AveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling2D",
        "Flatten", "Reshape", "Permute", "RepeatVector", "Cropping1D", "ZeroPadding1D", "UpSampling1D",
        "Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Dot",
        "BatchNormalization", "LayerNormalization", "UnitNormalization",
        "Attention", "AdditiveAttention", "MultiHeadAttention",
    }
)  # fmt: skip
# Other built-in objects a layer config holds: initializers, regularizers, constraints, dtype
# policies, and Keras 3's markers for tensors and plain values (not `__lambda__`: that is code).
OBJECT_CLASSES = frozenset(
    {
        "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform", "LecunNormal", "Orthogonal",
        "Zeros", "Ones", "Constant", "Identity", "RandomUniform", "RandomNormal", "TruncatedNormal",
        "VarianceScaling",
        "L1", "L2", "L1L2", "OrthogonalRegularizer",
        "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "RadialConstraint",
        "Policy", "DTypePolicy", "FloatDTypePolicy",
        "__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__tuple__", "__ellipsis__", "__slice__",
    }
)  # fmt: skip
# Activations named by string (Keras 2 and 3): Keras looks any other name up among its module's
# globals, which hold more than activations.
ACTIVATIONS = frozenset(
    {
        "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "glu", "silu", "swish", "mish",
        "sigmoid", "hard_sigmoid", "log_sigmoid", "sparse_sigmoid", "hard_silu", "hard_swish", "tanh", "hard_tanh",
        "tanh_shrink", "softmax", "log_softmax", "sparsemax", "softplus", "softsign", "sparse_plus", "squareplus",
        "exponential", "hard_shrink", "soft_shrink", "threshold",
    }
)  # fmt: skip
ACTIVATION_KEYS = frozenset({"activation", "recurrent_activation"})
# Where Keras keeps its own classes: a `module` key outside these names user code.
KERAS_MODULES = ("keras", "tf_keras")
# Keys whose value is code (a Lambda's function, its output_shape function) in any Keras version.
CODE_KEYS = frozenset({"function", "function_type", "output_shape_type", "fn", "custom_objects"})
# Keras only deserialises these with compile=True, which keras_model.load_keras_model never passes;
# they name optimizers and losses, not layers.
NOT_LOADED_KEYS = frozenset({"compile_config", "training_config"})
# tox-block's config is 5 kB; a zip member's declared size is checked before it is inflated.
MAX_CONFIG_BYTES = 64 << 20


class UnsafeModelError(InputFileError):
    """A model file whose config names a class or function that is not a listed Keras builtin."""


def read_zip_member(path: Path, member: str) -> bytes:
    """One member of a .keras zip, its declared size checked before it is inflated."""
    try:
        with zipfile.ZipFile(path) as zf:
            if zf.getinfo(member).file_size > MAX_CONFIG_BYTES:
                raise InputFileError(f"{path}: {member} is larger than {MAX_CONFIG_BYTES} bytes; not a model config")
            return zf.read(member)
    except (KeyError, zipfile.BadZipFile, OSError) as exc:
        raise InputFileError(f"{path}: not a Keras .keras archive (no readable {member}: {exc})") from exc


def read_h5_attribute(path: Path, name: str) -> Any:
    """One root attribute of an HDF5 Keras model (None when absent), read with h5py: nothing is deserialised."""
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - depends on the install
        from toxic_service.errors import BundleError

        raise BundleError("reading .h5 models needs h5py: pip install 'toxic-service[keras]'") from exc
    try:
        with h5py.File(path, "r") as h5:
            return h5.attrs.get(name)
    except OSError as exc:
        raise InputFileError(f"{path}: not an HDF5 Keras model ({exc})") from exc


def read_model_config(path: Path) -> dict[str, Any]:
    """The model config of a .keras zip (config.json) or an .h5 (its model_config attribute), as JSON."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        raw: Any = read_zip_member(path, "config.json")
    else:
        raw = read_h5_attribute(path, "model_config")
        if raw is None:
            raise UnsafeModelError(f"{path}: no model_config attribute (weights only?); cannot check it, not loading it")
    try:
        config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep to parse
        raise InputFileError(f"{path}: the model config is not valid JSON ({type(exc).__name__}: {exc})") from exc
    if not isinstance(config, dict):
        raise InputFileError(f"{path}: the model config is a JSON {type(config).__name__}, not an object")
    return config


def _keras_module(module: Any) -> bool:
    return module is None or (
        isinstance(module, str) and any(module == root or module.startswith(root + ".") for root in KERAS_MODULES)
    )


def _layer_name(node: dict[str, Any]) -> Any:
    config = node.get("config")
    return node.get("name") or (config.get("name") if isinstance(config, dict) else None)


def _is_layer(node: dict[str, Any]) -> bool:
    """A listed layer, or an unlisted class with a name (a custom layer): errors name it."""
    class_name = node.get("class_name")
    if not isinstance(class_name, str) or class_name in OBJECT_CLASSES:
        return False
    return class_name in LAYER_CLASSES or isinstance(_layer_name(node), str)


def _layer_label(node: dict[str, Any]) -> str:
    name = _layer_name(node) or "?"
    return f"layer {name!r} ({node.get('class_name')})"


def _objects(node: Any, where: str) -> Iterator[tuple[dict[str, Any], str, str]]:
    """(object dict, its enclosing layer, key path) for every dict in `node`, depth first."""
    stack = [(node, where, "")]
    while stack:
        item, layer, key_path = stack.pop()
        if isinstance(item, dict):
            if _is_layer(item):
                layer, key_path = _layer_label(item), ""
            yield item, layer, key_path
            children = [
                (value, layer, f"{key_path}.{key}" if key_path else str(key))
                for key, value in item.items()
                if key not in NOT_LOADED_KEYS
            ]
            stack.extend(reversed(children))  # reversed: popped in file order
        elif isinstance(item, list):
            stack.extend((value, layer, key_path) for value in reversed(item))


def check_model_config(config: dict[str, Any], origin: str) -> None:
    """UnsafeModelError naming the first layer (name and class) that holds code or a class not listed."""
    for obj, layer, key_path in _objects(config, "the model"):
        at = f"{layer}" + (f", in {key_path}" if key_path else "")
        class_name = obj.get("class_name")
        if class_name is not None:
            if not isinstance(class_name, str) or class_name not in LAYER_CLASSES | OBJECT_CLASSES:
                kind = (
                    "runs Python stored in the file"
                    if class_name in ("Lambda", "__lambda__")
                    else "is not a listed Keras builtin"
                )
                raise UnsafeModelError(f"{origin}: {at}: class {class_name!r} {kind}; refusing to load the model")
            registered = obj.get("registered_name")
            if registered is not None and registered != class_name:
                raise UnsafeModelError(
                    f"{origin}: {at}: registered_name {registered!r} names a custom object; refusing to load the model"
                )
        for key, value in obj.items():
            if key in CODE_KEYS and value is not None:
                raise UnsafeModelError(f"{origin}: {at}: key {key!r} carries code; refusing to load the model")
            if key in ACTIVATION_KEYS and isinstance(value, str) and value not in ACTIVATIONS:
                raise UnsafeModelError(
                    f"{origin}: {at}: {key} {value!r} is not a listed Keras activation; refusing to load the model"
                )
            if (key == "module" or key.endswith("_module")) and not _keras_module(value):
                raise UnsafeModelError(f"{origin}: {at}: {key} {value!r} is not a Keras module; refusing to load the model")


def check_model_file(path: Path) -> None:
    """Read and check `path`'s model config without Keras: UnsafeModelError when loading could run code."""
    check_model_config(read_model_config(path), str(path))
