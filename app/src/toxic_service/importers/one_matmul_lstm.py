"""A tf-keras LSTM whose unrolled step is one matmul, used only to build the conversion graph.

Keras's fused step (`implementation=2`) computes `x_t @ kernel + h @ recurrent_kernel`:
two matmuls with a short inner dimension (50 for tox-block), one per direction
and step. `[x_t, h] @ [kernel; recurrent_kernel]` is the same sum in one matmul
with twice the inner dimension, which XNNPACK runs faster (bench/service and
docs/benchmarks.md have the figures). The layer keeps Keras's variables
(kernel, recurrent_kernel, bias) and everything else about the layer, so
`set_weights()` and Bidirectional's backward copy work unchanged, and
`model import` still compares the converted graph with the source model.
"""

from __future__ import annotations

from typing import Any


def one_matmul_lstm_class() -> Any:
    """The tf-keras LSTM subclass (built on demand: importing tf-keras loads TensorFlow)."""
    import tensorflow as tf
    import tf_keras
    from tf_keras import backend

    class OneMatmulLSTMCell(tf_keras.layers.LSTMCell):
        def call(self, inputs: Any, states: Any, training: Any = None) -> Any:
            h_tm1, c_tm1 = states[0], states[1]
            # Concatenating constants: the converter folds this into one weight matrix.
            kernel = tf.concat([self.kernel, self.recurrent_kernel], axis=0)
            z = backend.dot(tf.concat([inputs, h_tm1], axis=-1), kernel)
            if self.use_bias:
                z = backend.bias_add(z, self.bias)
            # Keras's fused step, with the gate activation applied once to all four gates' pre-activations
            # (elementwise, so the same values) instead of once per gate: fewer, larger ops.
            i, f, _, o = tf.split(self.recurrent_activation(z), num_or_size_splits=4, axis=1)
            _, _, g, _ = tf.split(z, num_or_size_splits=4, axis=1)
            c = f * c_tm1 + i * self.activation(g)
            h = o * self.activation(c)
            return h, [h, c]

    class OneMatmulLSTM(tf_keras.layers.LSTM):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            cell = self.cell
            if cell.dropout or cell.recurrent_dropout:
                raise ValueError("the one-matmul step has no dropout: rebuild the layer with dropout=0")
            # Same cell, same variables once built; only the step's arithmetic is regrouped.
            cell.__class__ = OneMatmulLSTMCell

    return OneMatmulLSTM
