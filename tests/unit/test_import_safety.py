"""`model import` never runs code from the model file: Lambda layers and custom classes are refused unloaded.

Each crafted file WOULD write a marker file when Keras loads it; the raw load in
a subprocess proves that (so the file really carries code), then
`toxic-service model import` on the same file must refuse it, name the layer,
and leave no marker. TensorFlow steps run in their own processes, as in
test_model_import.py (TensorFlow picks its Keras once per process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from toxic_service.importers import InputFileError

pytest.importorskip("tf_keras")

# The function Keras stores in the file: it writes its default argument's path when called,
# and a functional model calls it while it is rebuilt from the config (on load).
BUILD_TF_KERAS_LAMBDA = textwrap.dedent(
    """
    import os, sys, tf_keras

    def sneaky(x, marker=sys.argv[2]):
        open(marker, "w").write("loaded code ran")
        return x

    inp = tf_keras.Input(shape=(4,))
    x = tf_keras.layers.Embedding(10, 2, name="embedding")(inp)
    x = tf_keras.layers.Bidirectional(tf_keras.layers.LSTM(2), name="bidi")(x)
    x = tf_keras.layers.Lambda(sneaky, name="sneaky_lambda")(x)
    out = tf_keras.layers.Dense(6, activation="sigmoid")(x)
    tf_keras.Model(inp, out).save(sys.argv[1])
    os.remove(sys.argv[2])  # building called it too; only a load may write it from here on
    """
)

# Keras 3 .keras: a Lambda nested inside a Sequential inside the functional model.
BUILD_KERAS3_LAMBDA = textwrap.dedent(
    """
    import os, sys, keras

    # The path as a constant in the bytecode (Keras 3 cannot reload a lambda's default arguments).
    sneaky = eval("lambda t: (open(%r, 'w').write('ran'), t)[1]" % sys.argv[2])
    inp = keras.Input(shape=(4,), dtype="int32")
    x = keras.layers.Embedding(10, 2)(inp)
    x = keras.layers.GlobalMaxPooling1D()(x)
    inner = keras.Sequential(
        [keras.layers.Dense(3), keras.layers.Lambda(sneaky, name="nested_lambda")],
        name="inner",
    )
    out = keras.layers.Dense(6, activation="sigmoid")(inner(x))
    keras.Model(inp, out).save(sys.argv[1])
    os.remove(sys.argv[2])
    """
)

RAW_LOAD_H5 = "import sys, tf_keras; tf_keras.models.load_model(sys.argv[1], compile=False)"
# Keras 3 refuses lambdas under its default safe_mode; safe_mode=False shows the file carries code.
RAW_LOAD_KERAS3 = "import sys, keras; keras.models.load_model(sys.argv[1], compile=False, safe_mode=False)"


def _run(args, *, legacy: bool, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_USE_LEGACY_KERAS", None)
    if legacy:
        env["TF_USE_LEGACY_KERAS"] = "1"
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _tokenizer(root: Path) -> Path:
    path = root / "tokenizer.json"
    words = ["the", "you", "idiot"]
    config = {"num_words": None, "lower": True, "split": " ", "char_level": False, "oov_token": None}
    config["word_index"] = json.dumps({w: i for i, w in enumerate(words, 1)})
    path.write_text(json.dumps({"class_name": "Tokenizer", "config": config}))
    return path


def _model_import(root: Path, model: Path, *, legacy: bool) -> subprocess.CompletedProcess:
    args = ["model", "import", str(model), "--vocab", str(_tokenizer(root)), "--out", str(root / "bundle")]
    return _run([sys.executable, "-m", "toxic_service", *args, "--source", "t", "--licence", "MIT"], legacy=legacy, cwd=root)


def _build(tmp_path: Path, script: str, name: str, *, legacy: bool) -> tuple[Path, Path]:
    model, marker = tmp_path / name, tmp_path / "MARKER"
    proc = _run([sys.executable, "-c", script, str(model), str(marker)], legacy=legacy, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert model.is_file() and not marker.exists()
    return model, marker


def _assert_refused(proc: subprocess.CompletedProcess, marker: Path, *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr[-3000:]
    assert "refusing to load" in proc.stderr
    assert not marker.exists(), "model import ran code stored in the model file"
    assert not (marker.parent / "bundle").exists()


def test_h5_lambda_is_refused_before_tf_keras_runs_it(tmp_path):
    model, marker = _build(tmp_path, BUILD_TF_KERAS_LAMBDA, "lambda.h5", legacy=True)

    _assert_refused(_model_import(tmp_path, model, legacy=True), marker, "'sneaky_lambda' (Lambda)")

    # The crafted file is real: tf-keras's own .h5 load runs the stored function.
    proc = _run([sys.executable, "-c", RAW_LOAD_H5, str(model)], legacy=True, cwd=tmp_path)
    assert marker.exists(), f"the raw load did not run the Lambda (rc {proc.returncode}): {proc.stderr[-2000:]}"


def test_keras_zip_with_nested_lambda_is_refused(tmp_path):
    model, marker = _build(tmp_path, BUILD_KERAS3_LAMBDA, "lambda.keras", legacy=False)

    _assert_refused(_model_import(tmp_path, model, legacy=False), marker, "'nested_lambda' (Lambda)")

    proc = _run([sys.executable, "-c", RAW_LOAD_KERAS3, str(model)], legacy=False, cwd=tmp_path)
    assert marker.exists(), f"the raw load did not run the Lambda (rc {proc.returncode}): {proc.stderr[-2000:]}"


def _rewrite_keras_config(source: Path, target: Path, edit) -> None:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            zout.writestr(item, data)


def _first_layer(config: dict, class_name: str) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["class_name"] == class_name)


@pytest.fixture(scope="module")
def plain_keras3(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plain")
    script = textwrap.dedent(
        """
        import sys, keras
        inp = keras.Input(shape=(4,), dtype="int32")
        x = keras.layers.Embedding(10, 2)(inp)
        x = keras.layers.GlobalMaxPooling1D()(x)
        keras.Model(inp, keras.layers.Dense(6, activation="sigmoid", name="scores")(x)).save(sys.argv[1])
        """
    )
    proc = _run([sys.executable, "-c", script, str(root / "plain.keras")], legacy=False, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "plain.keras"


def test_keras_zip_with_a_custom_class_is_refused(tmp_path, plain_keras3):
    # A class from a module of the attacker's. Keras 3 releases before the CVE-2025-1550 fix imported the
    # named module to find the class (its top level runs); the installed one may not: refused either way.
    (tmp_path / "evil_layers.py").write_text(f"open({str(tmp_path / 'MARKER')!r}, 'w').write('imported')\n")

    def edit(config):
        dense = _first_layer(config, "Dense")
        dense.update(module="evil_layers", class_name="Scores", registered_name="evil>Scores")

    model = tmp_path / "custom.keras"
    _rewrite_keras_config(plain_keras3, model, edit)
    _assert_refused(_model_import(tmp_path, model, legacy=False), tmp_path / "MARKER", "'scores' (Scores)")


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda c: _first_layer(c, "Dense").update(registered_name="evil>Dense"), "registered_name 'evil>Dense'"),
        (lambda c: _first_layer(c, "Dense").update(module="os"), "module 'os' is not a Keras module"),
        (
            lambda c: _first_layer(c, "Dense")["config"].update(activation="deserialize"),
            "'scores' (Dense), in config: activation 'deserialize' is not a listed Keras activation",
        ),
        (
            lambda c: _first_layer(c, "Dense")["config"].update(
                kernel_initializer={"module": "keras.initializers", "class_name": "Sneaky", "config": {}}
            ),
            "'scores' (Dense), in config.kernel_initializer: class 'Sneaky'",
        ),
    ],
)
def test_custom_objects_inside_builtin_layers_are_refused_unloaded(tmp_path, plain_keras3, edit, needle):
    from toxic_service.importers.keras_model import load_keras_model
    from toxic_service.importers.model_config import UnsafeModelError

    model = tmp_path / "edited.keras"
    _rewrite_keras_config(plain_keras3, model, edit)
    with pytest.raises(UnsafeModelError, match="refusing to load") as info:
        load_keras_model(model)
    assert needle in str(info.value)


def test_builtin_models_pass_the_check(plain_keras3):
    from toxic_service.importers.model_config import check_model_file

    check_model_file(plain_keras3)
    real = Path(__file__).resolve().parents[2] / ".cache/assets/src/lstm_model_0.1.2.h5"
    if real.is_file():  # tox-block's Keras 2.2.4 file, as `make assets` imports it
        check_model_file(real)


def test_a_config_nested_too_deep_to_parse_is_refused_not_a_traceback(tmp_path, plain_keras3):
    from toxic_service.importers.model_config import check_model_file

    model = tmp_path / "deep.keras"
    with zipfile.ZipFile(plain_keras3) as zin, zipfile.ZipFile(model, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, b"[" * 200_000 + b"]" * 200_000 if item.filename == "config.json" else zin.read(item))
    with pytest.raises(InputFileError, match=r"deep\.keras: the model config is not valid JSON \(RecursionError"):
        check_model_file(model)
