"""Convert `Embedding -> LSTM` models to a graph that projects each distinct word of a batch once.

Why: an LSTM step computes `x_t @ kernel + h @ recurrent_kernel`. In the
unrolled graph the first half runs for every position of every comment, though
a batch of 64 comments x 100 positions holds a few hundred distinct words and
is mostly padding: half of all the model's arithmetic, repeated. This graph
takes the batch's distinct word indexes (`words`, [W]) and each position's
slot among them (`positions`, [batch, max_len]); it projects the W words once,
in one large matmul (`embedding[words] @ kernel + bias`), and each step
gathers its rows, leaving one small matmul per step (`h @ recurrent_kernel`).
The runtime (runtime/litert.py) builds the two inputs from a batch of word
indexes with `np.unique`.

The arithmetic is Keras's, regrouped: Keras 2's hard_sigmoid (`0.2 z + 0.5`,
clipped) has its scale and shift folded into the projection and the recurrent
kernel, so a gate costs a clip. `model import` compares the result with the
source model like any conversion, and falls back to the unrolled rebuild
(keras_model.rebuild_for_tflite) for models of any other shape.

Handled: tf-keras models that are one chain of layers, [Input ->] Embedding
(without mask_zero) -> LSTM or Bidirectional(LSTM) (any merge mode but None,
with or without return_sequences, go_backwards) -> any layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

WORDS_INPUT = "words"
POSITIONS_INPUT = "positions"
MERGE_MODES = ("concat", "sum", "mul", "ave")


@dataclass(frozen=True)
class Chain:
    """The layers of a model this module can lower, in order."""

    embedding: Any
    recurrent: Any  # an LSTM or a Bidirectional wrapping two
    lstms: tuple[Any, ...]  # the LSTM layer(s) inside `recurrent`: one, or forward and backward
    rest: tuple[Any, ...]
    max_len: int

    @property
    def bidirectional(self) -> bool:
        return len(self.lstms) == 2


def lowerable(model: Any) -> Chain | str:
    """The model's Chain, or why it cannot be lowered (said to the user, who gets the unrolled graph instead)."""
    if not type(model).__module__.startswith("tf_keras"):
        return "not a tf-keras model"
    layers = _chained_layers(model)
    if isinstance(layers, str):
        return layers
    if len(layers) < 2 or type(layers[0]).__name__ != "Embedding":
        return "the model does not start with Embedding -> recurrent layer"
    embedding, recurrent = layers[0], layers[1]
    if embedding.mask_zero:
        return "the Embedding masks padding (mask_zero=True)"
    lstms = _lstms(recurrent)
    if isinstance(lstms, str):
        return lstms
    for lstm in lstms:
        if lstm.stateful or lstm.return_state or lstm.time_major:
            return f"layer {lstm.name} is stateful, returns its state or is time-major"
    max_len = model.inputs[0].shape[1]
    if max_len is None:
        return "the input length is not fixed"
    return Chain(
        embedding=embedding, recurrent=recurrent, lstms=tuple(lstms), rest=tuple(layers[2:]), max_len=int(max_len)
    )


def _chained_layers(model: Any) -> list[Any] | str:
    """The model's layers (InputLayer left out) when each takes the previous one's only output."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    if type(model).__name__ == "Sequential":
        return layers
    config = model.get_config()
    entries = [entry for entry in config.get("layers", []) if entry.get("class_name") != "InputLayer"]
    if len(config.get("input_layers", [])) != 1 or len(entries) != len(layers):
        return "the model is not a single chain of layers"
    previous = None
    for entry in entries:
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) != 1 or len(nodes[0]) != 1:
            return f"layer {entry.get('name')} takes several inputs or is called several times"
        inbound = nodes[0][0]
        # Keyword arguments (mask, training...) would change the call: only the plain form is lowered.
        if (previous is not None and inbound[0] != previous) or (len(inbound) > 3 and inbound[3]):
            return f"layer {entry.get('name')} is not fed by the layer before it alone"
        previous = entry.get("name")
    outputs = config.get("output_layers") or []
    if len(outputs) != 1 or outputs[0][0] != previous:
        return "the model's output is not its last layer"
    return layers


def _lstms(layer: Any) -> list[Any] | str:
    name = type(layer).__name__
    if name == "LSTM":
        return [layer]
    if name == "Bidirectional":
        if layer.merge_mode not in MERGE_MODES:
            return f"Bidirectional merge_mode {layer.merge_mode!r} is not one of {', '.join(MERGE_MODES)}"
        inner = (layer.forward_layer, layer.backward_layer)
        if all(type(lstm).__name__ == "LSTM" for lstm in inner):
            return list(inner)
    return f"the layer after Embedding is {name}, not LSTM or Bidirectional(LSTM)"


def _hard_sigmoid() -> Callable[[Any], Any]:
    import tf_keras

    return tf_keras.activations.hard_sigmoid


def _clip_to_unit(z: Any) -> Any:
    import tensorflow as tf

    return tf.clip_by_value(z, 0.0, 1.0)


@dataclass(frozen=True)
class _Direction:
    """One LSTM's weights, ready for the graph: gate columns i, f, c, o as Keras stores them."""

    kernel: np.ndarray  # [embedding dim, 4 units], hard_sigmoid's scale folded into i, f, o
    recurrent_kernel: np.ndarray  # [units, 4 units], likewise
    bias: np.ndarray  # [4 units], scale and shift folded into i, f, o
    gate: Callable[[Any], Any]  # applied to the folded i, f, o pre-activations
    activation: Callable[[Any], Any]
    units: int
    backwards: bool
    return_sequences: bool


def _direction(lstm: Any) -> _Direction:
    cell = lstm.cell
    units = int(cell.units)
    kernel = np.array(cell.kernel.numpy(), dtype=np.float32)
    recurrent = np.array(cell.recurrent_kernel.numpy(), dtype=np.float32)
    bias = np.array(cell.bias.numpy(), dtype=np.float32) if cell.use_bias else np.zeros(4 * units, np.float32)
    gate = cell.recurrent_activation
    if gate is _hard_sigmoid():
        # hard_sigmoid(z) = clip(0.2 z + 0.5, 0, 1): the scale and shift move into the weights.
        sigmoid_gates = np.r_[0:2 * units, 3 * units:4 * units]  # i, f and o; c keeps its own activation
        for weights in (kernel, recurrent):
            weights[:, sigmoid_gates] *= np.float32(0.2)
        bias[sigmoid_gates] = bias[sigmoid_gates] * np.float32(0.2) + np.float32(0.5)
        gate = _clip_to_unit

    return _Direction(
        kernel=kernel,
        recurrent_kernel=recurrent,
        bias=bias,
        gate=gate,
        activation=cell.activation,
        units=units,
        backwards=bool(lstm.go_backwards),
        return_sequences=bool(lstm.return_sequences),
    )


def _run_direction(weights: _Direction, embedded: Any, slots: list[Any]) -> list[Any]:
    """The LSTM over the steps in its processing order; the hidden state after each step."""
    import tensorflow as tf

    projected = tf.matmul(embedded, weights.kernel) + weights.bias  # [W, 4 units]: every distinct word, once
    order = reversed(slots) if weights.backwards else slots
    outputs: list[Any] = []
    h = c = None
    for step_slots in order:
        z = tf.gather(projected, step_slots)
        if h is not None:  # the zero initial state adds nothing: the first step skips the matmul
            z = z + tf.matmul(h, weights.recurrent_kernel)
        # Four equal splits, not split_v: XNNPACK runs SPLIT, and an op it cannot run cuts its graph in pieces.
        i, f, g, o = tf.split(z, 4, axis=1)
        i, f, o = weights.gate(i), weights.gate(f), weights.gate(o)
        c = i * weights.activation(g) if c is None else f * c + i * weights.activation(g)
        h = o * weights.activation(c)
        outputs.append(h)
    return outputs


def _sequence_or_last(outputs: list[Any], weights: _Direction, *, to_time_order: bool) -> Any:
    import tensorflow as tf

    if not weights.return_sequences:
        return outputs[-1]
    # Keras returns a go_backwards layer's sequence in processing order; Bidirectional flips it to time order.
    return tf.stack(outputs[::-1] if to_time_order and weights.backwards else outputs, axis=1)


def _max_pool_follows(chain: Chain) -> bool:
    """True when the layer after the recurrent one takes the maximum over time of its (concatenated) sequences.

    Then each direction keeps a running maximum instead of stacking its 100 states for the pooling layer:
    the same values (max over time commutes with concatenation), fewer and smaller tensors (~5% faster, measured).
    """
    if not chain.rest or type(chain.rest[0]).__name__ != "GlobalMaxPooling1D":
        return False
    pool = chain.rest[0]
    if pool.data_format != "channels_last" or getattr(pool, "keepdims", False):
        return False
    concat = not chain.bidirectional or chain.recurrent.merge_mode == "concat"
    return concat and all(lstm.return_sequences for lstm in chain.lstms)


def _running_max(outputs: list[Any]) -> Any:
    import tensorflow as tf

    result = outputs[0]
    for output in outputs[1:]:
        result = tf.maximum(result, output)
    return result


def _merge(mode: str, forward: Any, backward: Any) -> Any:
    import tensorflow as tf

    if mode == "concat":
        return tf.concat([forward, backward], axis=-1)
    if mode == "sum":
        return forward + backward
    if mode == "mul":
        return forward * backward
    return (forward + backward) / 2  # "ave"


def word_projection_function(chain: Chain) -> Any:
    """The tf.function (words [W], positions [batch, max_len]) -> scores that the converter turns into TFLite."""
    import tensorflow as tf

    table = np.array(chain.embedding.embeddings.numpy(), dtype=np.float32)
    directions = [_direction(lstm) for lstm in chain.lstms]
    pooled = _max_pool_follows(chain)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int32, name=WORDS_INPUT),
            tf.TensorSpec([None, chain.max_len], tf.int32, name=POSITIONS_INPUT),
        ]
    )
    def scores(words: Any, positions: Any) -> Any:
        embedded = tf.gather(table, words)  # [W, embedding dim]
        slots = tf.unstack(tf.transpose(positions))  # per step: [batch] slots into `words`
        results = []
        for weights in directions:
            outputs = _run_direction(weights, embedded, slots)
            if pooled:
                results.append(_running_max(outputs))
            else:
                results.append(_sequence_or_last(outputs, weights, to_time_order=chain.bidirectional))
        x = _merge(chain.recurrent.merge_mode, *results) if chain.bidirectional else results[0]
        for layer in chain.rest[1:] if pooled else chain.rest:
            x = layer(x, training=False)
        return x

    return scores


def convert(chain: Chain, *, quantize: bool = False) -> bytes:
    """TFLite bytes of the word-projection graph, built-in ops only; `quantize` stores weights as int8."""
    import tensorflow as tf

    function = word_projection_function(chain)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], function)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return bytes(converter.convert())


def describe(chain: Chain) -> str:
    """The chain in one line for the import log, e.g. `Embedding -> Bidirectional(LSTM 50) -> Dense`."""
    inner = f"LSTM {chain.lstms[0].units}"
    inner = f"Bidirectional({inner})" if chain.bidirectional else inner
    return " -> ".join(["Embedding", inner, *(type(layer).__name__ for layer in chain.rest)])
