"""`model import` on a tiny Keras 2-style model (tf-keras, LSTM with hard_sigmoid) saved as .h5.

Each TensorFlow step runs in its own process, as users run it: TensorFlow picks
tf-keras or Keras 3 once per process (TF_USE_LEGACY_KERAS).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tf_keras")
pytest.importorskip("ai_edge_litert")

MAX_LEN = 12
WORDS = ["the", "you", "idiot", "thank", "kill", "edit", "good", "stupid"]

BUILD = textwrap.dedent(
    """
    import sys, numpy as np, tensorflow as tf, tf_keras
    # Keras 2's hard_sigmoid (0.2x + 0.5), not Keras 3's (x/6 + 0.5): the reference below depends on it.
    assert abs(float(tf_keras.activations.hard_sigmoid(tf.constant(1.0))) - 0.7) < 1e-6
    tf_keras.utils.set_random_seed(3)
    inp = tf_keras.Input(shape=(%d,))  # float input, as Keras 2 saved tox-block's
    x = tf_keras.layers.Embedding(%d, 4)(inp)
    # As tox-block saved it: implementation 1 and dropout, which the rebuild turns into implementation 2.
    lstm = tf_keras.layers.LSTM(3, return_sequences=True, recurrent_activation="hard_sigmoid", implementation=1,
                                dropout=0.1, recurrent_dropout=0.1)
    x = tf_keras.layers.Bidirectional(lstm)(x)
    x = tf_keras.layers.GlobalMaxPooling1D()(x)
    out = tf_keras.layers.Dense(6, activation="sigmoid")(x)
    model = tf_keras.Model(inp, out)
    # Large recurrent weights push gates into hard_sigmoid's clipped range, where Keras 2 and 3 differ.
    model.set_weights([w * 4 for w in model.get_weights()])
    model.save(sys.argv[1])
    x = np.random.default_rng(1).integers(0, %d, (16, %d)).astype("float32")
    np.save(sys.argv[2], x)
    np.save(sys.argv[3], model.predict(x, verbose=0))
    """
) % (MAX_LEN, len(WORDS) + 1, len(WORDS) + 1, MAX_LEN)


def _run(args, *, legacy: bool, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_USE_LEGACY_KERAS", None)
    if legacy:
        env["TF_USE_LEGACY_KERAS"] = "1"
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def keras2_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("keras2")
    paths = [root / "model.h5", root / "x.npy", root / "y.npy"]
    proc = _run([sys.executable, "-c", BUILD, *map(str, paths)], legacy=True, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tokenizer = root / "tokenizer.json"
    tokenizer.write_text(
        json.dumps(
            {
                "class_name": "Tokenizer",
                "config": {
                    "num_words": None,
                    "filters": '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n',
                    "lower": True,
                    "split": " ",
                    "char_level": False,
                    "oov_token": None,
                    "word_index": json.dumps({w: i for i, w in enumerate(WORDS, 1)}),
                },
            }
        )
    )
    return root, paths, tokenizer


def _import(root, model, tokenizer, out, *extra):
    return _run(
        [
            sys.executable,
            "-m",
            "toxic_service",
            "model",
            "import",
            str(model),
            "--vocab",
            str(tokenizer),
            "--out",
            str(out),
            "--source",
            "test",
            "--licence",
            "MIT",
            *extra,
        ],
        legacy=True,
        cwd=root,
    )


def test_converts_verifies_and_records_the_vocabulary(keras2_model):
    from ai_edge_litert.interpreter import Interpreter
    from toxic_service.bundle import load_metadata
    from toxic_service.importers.sources import load_any

    root, (model, x_path, y_path), tokenizer = keras2_model
    out = root / "bundle"
    proc = _import(root, model, tokenizer, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = load_metadata(out)
    assert meta.vocabulary_checksum == load_any(tokenizer).checksum and meta.max_len == MAX_LEN and meta.index_base == 1

    interpreter = Interpreter(model_path=str(out / "model.tflite"))
    detail = interpreter.get_input_details()[0]
    assert list(detail["shape_signature"]) == [-1, MAX_LEN] and detail["dtype"] == np.int32
    x, expected = np.load(x_path).astype(np.int32), np.load(y_path)
    interpreter.resize_tensor_input(detail["index"], list(x.shape))  # a batch size the model was not converted with
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    # Against the scores tf-keras gave before any conversion: Keras 2's hard_sigmoid survived.
    assert np.abs(got - expected).max() < 1e-4


def test_refuses_and_writes_nothing_when_conversion_differs(keras2_model):
    root, (model, _, _), tokenizer = keras2_model
    out = root / "refused"
    # int8 weights cannot match within 1e-9: the verification must refuse.
    proc = _import(root, model, tokenizer, out, "--quantize", "--tolerance", "1e-9")
    assert proc.returncode == 1 and "differs from the source model" in proc.stderr
    assert not out.exists()


def test_refuses_a_vocabulary_larger_than_the_embedding(keras2_model):
    root, (model, _, _), _ = keras2_model
    big = root / "big.json"
    big.write_text(
        json.dumps({"class_name": "Tokenizer", "config": {"word_index": json.dumps({f"w{i}": i for i in range(1, 50)})}})
    )
    proc = _import(root, model, big, root / "big-bundle")
    assert proc.returncode == 1 and "embedding" in proc.stderr and not (root / "big-bundle").exists()


def test_rebuild_asks_for_one_matmul_per_step_for_all_gates():
    from toxic_service.importers.keras_model import _unroll

    lstm = {"class_name": "LSTM", "config": {"units": 3, "unroll": False, "implementation": 1,
                                             "dropout": 0.1, "recurrent_dropout": 0.1}}
    rnn = {"class_name": "SimpleRNN", "config": {"units": 3, "unroll": False, "dropout": 0.2}}
    config = {"layers": [{"class_name": "Bidirectional", "config": {"layer": lstm}}, rnn]}
    assert _unroll(config) == 2
    assert lstm["config"] == {"units": 3, "unroll": True, "implementation": 2, "dropout": 0.0, "recurrent_dropout": 0.0}
    # A layer without `implementation` keeps its settings: only unrolled.
    assert rnn["config"] == {"units": 3, "unroll": True, "dropout": 0.2}


# Builds LSTMs in every shape the rebuild meets, rebuilds the model for conversion and compares both.
ONE_MATMUL = textwrap.dedent(
    """
    import json, numpy as np, tf_keras
    from toxic_service.importers.keras_model import rebuild_for_tflite
    tf_keras.utils.set_random_seed(5)
    inp = tf_keras.Input(shape=(9,))
    x = tf_keras.layers.Embedding(20, 4)(inp)
    x = tf_keras.layers.Bidirectional(tf_keras.layers.LSTM(3, return_sequences=True, recurrent_activation="hard_sigmoid",
                                                            implementation=1, recurrent_dropout=0.2))(x)
    x = tf_keras.layers.LSTM(5, go_backwards=True, use_bias=False)(x)  # sigmoid gates, last state only
    model = tf_keras.Model(inp, tf_keras.layers.Dense(2)(x))
    model.set_weights([w * 3 for w in model.get_weights()])
    rebuilt = rebuild_for_tflite(model)
    x = np.random.default_rng(2).integers(0, 20, (32, 9))
    diff = float(np.abs(model.predict(x.astype("float32"), verbose=0) - rebuilt.predict(x.astype("int32"), verbose=0)).max())
    cells = sorted({type(layer.cell).__name__ for layer in
                    (rebuilt.layers[2].forward_layer, rebuilt.layers[2].backward_layer, rebuilt.layers[3])})
    print(json.dumps({"diff": diff, "cells": cells}))
    """
)


def test_rebuilt_lstms_take_one_matmul_per_step_and_give_the_same_scores(tmp_path):
    proc = _run([sys.executable, "-c", ONE_MATMUL], legacy=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["cells"] == ["OneMatmulLSTMCell"]
    assert result["diff"] < 1e-5


def test_one_matmul_lstm_refuses_dropout():
    pytest.importorskip("tensorflow")
    proc = _run(
        [sys.executable, "-c",
         "from toxic_service.importers.one_matmul_lstm import one_matmul_lstm_class\n"
         "one_matmul_lstm_class()(3, dropout=0.1)"],
        legacy=True, cwd=Path.cwd(),
    )
    assert proc.returncode != 0 and "has no dropout" in proc.stderr


def test_model_keras_from_with_keras_loads_with_stock_keras_and_scores_alike(keras2_model):
    # The conversion-only LSTM class must not leak into model.keras: the keras runtime loads it in a new process.
    root, (model, x_path, y_path), tokenizer = keras2_model
    out = root / "with-keras"
    proc = _import(root, model, tokenizer, out, "--with-keras")
    assert proc.returncode == 0, proc.stderr[-3000:]
    check = (
        "import sys, numpy as np\n"
        "from toxic_service.runtime.keras import KerasRuntime\n"
        f"got = KerasRuntime({str(out / 'model.keras')!r}).predict(np.load({str(x_path)!r}).astype(np.int32))\n"
        f"print(float(np.abs(got - np.load({str(y_path)!r})).max()))\n"
    )
    run = _run([sys.executable, "-c", check], legacy=False, cwd=root)
    assert run.returncode == 0, run.stderr[-3000:]
    assert float(run.stdout.strip().splitlines()[-1]) < 1e-4
