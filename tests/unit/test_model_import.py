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


def _served_scores(bundle: Path, x: np.ndarray):
    from toxic_service.runtime.litert import LiteRTRuntime

    runtime = LiteRTRuntime(bundle / "model.tflite")
    return runtime, runtime.predict(x.astype(np.int32))


def test_converts_verifies_and_records_the_vocabulary(keras2_model):
    from toxic_service.bundle import load_metadata
    from toxic_service.importers.sources import load_any

    root, (model, x_path, y_path), tokenizer = keras2_model
    out = root / "bundle"
    proc = _import(root, model, tokenizer, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "to a word-projection graph" in proc.stderr
    meta = load_metadata(out)
    assert meta.vocabulary_checksum == load_any(tokenizer).checksum and meta.max_len == MAX_LEN and meta.index_base == 1

    # 16 rows: a batch size the model was not converted with, through the serving runtime.
    runtime, got = _served_scores(out, np.load(x_path))
    assert runtime.projects_words and runtime.max_len == MAX_LEN
    # Against the scores tf-keras gave before any conversion: Keras 2's hard_sigmoid survived.
    assert np.abs(got - np.load(y_path)).max() < 1e-4


def test_unrolled_gives_the_word_index_graph_and_the_same_scores(keras2_model):
    from ai_edge_litert.interpreter import Interpreter

    root, (model, x_path, y_path), tokenizer = keras2_model
    out = root / "unrolled"
    proc = _import(root, model, tokenizer, out, "--unrolled")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no word-projection graph: --unrolled given" in proc.stderr
    details = Interpreter(model_path=str(out / "model.tflite")).get_input_details()
    assert [(list(d["shape_signature"]), d["dtype"]) for d in details] == [([-1, MAX_LEN], np.int32)]
    runtime, got = _served_scores(out, np.load(x_path))
    assert not runtime.projects_words
    assert np.abs(got - np.load(y_path)).max() < 1e-4


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


# Every LSTM shape the word-projection graph handles, against tf-keras's own scores, served by LiteRT with few
# `words` slots so that batches also take the split path; and the shapes it must leave to the unrolled rebuild.
WORD_PROJECTION = textwrap.dedent(
    """
    import json, numpy as np, tf_keras
    from tf_keras import layers
    from toxic_service.importers import word_projection
    from toxic_service.runtime.litert import LiteRTRuntime
    tf_keras.utils.set_random_seed(7)
    T, V = 9, 30

    def chain(*body, mask_zero=False):
        inp = tf_keras.Input(shape=(T,))
        x = layers.Embedding(V, 4, mask_zero=mask_zero)(inp)
        for layer in body:
            x = layer(x)
        model = tf_keras.Model(inp, x)
        model.set_weights([w * 3 for w in model.get_weights()])  # gates into hard_sigmoid's clipped range
        return model

    lowered = {
        "bi concat seq + max pool": chain(layers.Bidirectional(layers.LSTM(3, return_sequences=True,
                                          recurrent_activation="hard_sigmoid")), layers.GlobalMaxPooling1D(), layers.Dense(2)),
        "bi concat seq + flatten": chain(layers.Bidirectional(layers.LSTM(3, return_sequences=True)), layers.Flatten(),
                                         layers.Dense(2)),
        "bi sum last": chain(layers.Bidirectional(layers.LSTM(3, recurrent_activation="hard_sigmoid"), merge_mode="sum"),
                             layers.Dense(2, activation="sigmoid")),
        "bi ave seq + avg pool": chain(layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="ave"),
                                       layers.GlobalAveragePooling1D()),
        "backwards no bias seq + flatten": chain(layers.LSTM(3, go_backwards=True, use_bias=False, return_sequences=True,
                                                             activation="relu"), layers.Flatten()),
        "backwards last": chain(layers.LSTM(5, go_backwards=True)),
    }
    rng = np.random.default_rng(3)
    x = rng.integers(0, V, (40, T)).astype(np.int32)
    x[:10, :5] = 0  # padded rows, as the tokenizer pads
    result = {}
    for name, model in lowered.items():
        found = word_projection.lowerable(model)
        assert not isinstance(found, str), (name, found)
        expected = model.predict(x.astype("float32"), verbose=0)
        runtime = LiteRTRuntime(model_content=word_projection.convert(found), words_cap=12, buckets=(1, 8, 32))
        got = runtime.predict(x)
        # A small call whose distinct words fit one row (a comment and its sentences) projects only max_len slots.
        few = x[10:15] % T
        narrow = runtime.predict(few)
        assert runtime._shape == (8, T), runtime._shape
        expected_few = model.predict(few.astype("float32"), verbose=0)
        result[name] = max(float(np.abs(got.reshape(len(x), -1) - expected.reshape(len(x), -1)).max()),
                           float(np.abs(narrow.reshape(len(few), -1) - expected_few.reshape(len(few), -1)).max()))

    def refused(*body, mask_zero=False):
        return word_projection.lowerable(chain(*body, mask_zero=mask_zero))

    inp = tf_keras.Input(shape=(T,))
    e = layers.Embedding(V, 4)(inp)
    branches = tf_keras.Model(inp, layers.Concatenate()([layers.LSTM(2)(e), layers.GlobalMaxPooling1D()(e)]))
    reasons = {
        "mask": refused(layers.LSTM(2), mask_zero=True),
        "gru": refused(layers.GRU(2)),
        "conv first": refused(layers.Conv1D(2, 3), layers.LSTM(2)),
        "no merge": refused(layers.Bidirectional(layers.LSTM(2), merge_mode=None)),
        "branches": word_projection.lowerable(branches),
    }
    print(json.dumps({"diff": result, "reasons": reasons}))
    """
)


def test_word_projection_graph_gives_keras_scores_for_every_lstm_shape_it_takes(tmp_path):
    proc = _run([sys.executable, "-c", WORD_PROJECTION], legacy=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result["diff"]) == 6 and all(diff < 1e-5 for diff in result["diff"].values()), result["diff"]
    reasons = result["reasons"]
    assert "mask_zero" in reasons["mask"]
    assert "GRU" in reasons["gru"] and "Conv1D" in reasons["conv first"]
    # merge_mode None returns two tensors: either check may say so first.
    assert reasons["no merge"] == "the model's output is not its last layer" or "merge_mode None" in reasons["no merge"]
    assert "is not fed by the layer before it" in reasons["branches"]
