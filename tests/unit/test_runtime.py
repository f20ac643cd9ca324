"""LiteRT and Keras runtimes on the tiny model: same scores, batch buckets, refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from toxic_service.bundle import load_metadata
from toxic_service.errors import BundleError, ConfigurationError
from toxic_service.runtime.factory import create_runtime
from toxic_service.runtime.litert import LiteRTRuntime


@pytest.fixture(scope="module")
def meta(tiny_bundle_dir):
    return load_metadata(tiny_bundle_dir)


@pytest.fixture(scope="module")
def litert(tiny_settings, tiny_bundle_dir, meta):
    return create_runtime(tiny_settings, tiny_bundle_dir, meta)


@pytest.fixture(scope="module")
def keras_runtime(tiny_settings, tiny_bundle_dir, meta):
    pytest.importorskip("tensorflow", reason="TensorFlow (the keras extra) is not installed")
    return create_runtime(tiny_settings.replace(**{"runtime": "keras"}), tiny_bundle_dir, meta)


def random_batch(rows: int, meta, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, meta.vocabulary_size + 1, size=(rows, meta.max_len), dtype=np.int32)
    # Some rows pre-padded like real short comments.
    for r in range(0, rows, 3):
        batch[r, : rng.integers(0, meta.max_len)] = 0
    return batch


@pytest.mark.parametrize("rows", [1, 3, 8, 50, 300])
def test_litert_and_keras_agree(litert, keras_runtime, meta, rows):
    batch = random_batch(rows, meta, seed=rows)
    a, b = litert.predict(batch), keras_runtime.predict(batch)
    assert a.shape == b.shape == (rows, len(meta.labels)) and a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_scores_are_sigmoids_that_depend_on_the_input(litert, meta):
    scores = litert.predict(random_batch(64, meta))
    assert np.all((scores > 0) & (scores < 1))
    assert np.ptp(scores, axis=0).min() > 1e-3  # different sequences, different scores


def test_buckets_pick_the_smallest_that_fits(litert):
    assert [litert.bucket_for(n) for n in (1, 2, 8, 9, 32, 33, 64, 65, 256, 1000)] == [1, 8, 8, 32, 32, 64, 64, 64, 64, 64]


def test_one_interpreter_resized_only_when_the_bucket_changes(tiny_bundle_dir, meta):
    runtime = LiteRTRuntime(tiny_bundle_dir / "model.tflite")
    for rows in (1, 1, 1):  # the loaded size: no resize
        runtime.predict(random_batch(rows, meta))
    assert runtime.resizes == 0
    for rows in (2, 5, 8, 3, 7):  # all bucket 8: one resize
        runtime.predict(random_batch(rows, meta))
    assert runtime.resizes == 1
    runtime.predict(random_batch(600, meta))  # chunks of 64: one more resize, however many chunks
    assert runtime.resizes == 2
    runtime.predict(random_batch(1, meta))
    assert runtime.resizes == 3


def test_a_row_scores_the_same_alone_padded_into_a_bucket_or_split_over_chunks(litert, meta):
    batch = random_batch(600, meta, seed=9)
    whole = litert.predict(batch)
    alone = np.concatenate([litert.predict(batch[i : i + 1]) for i in (0, 299, 599)])
    np.testing.assert_allclose(whole[[0, 299, 599]], alone, atol=1e-6)
    np.testing.assert_allclose(litert.predict(batch[:5]), whole[:5], atol=1e-6)


def test_wrong_shapes_are_refused_and_empty_batches_are_fine(litert, meta):
    with pytest.raises(ValueError, match=r"\(n, 20\)"):
        litert.predict(np.zeros((2, meta.max_len + 1), np.int32))
    with pytest.raises(ValueError):
        litert.predict(np.zeros(meta.max_len, np.int32))
    assert litert.predict(np.zeros((0, meta.max_len), np.int32)).shape == (0, 6)


def copy_bundle(tiny_bundle_dir, tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, target)
    return target


@pytest.mark.parametrize("runtime", ["litert", "keras"])
def test_missing_or_changed_model_file_is_a_bundle_error(tiny_settings, tiny_bundle_dir, meta, tmp_path, runtime):
    bundle = copy_bundle(tiny_bundle_dir, tmp_path)
    settings = tiny_settings.replace(**{"runtime": runtime})
    name = "model.tflite" if runtime == "litert" else "model.keras"
    data = bytearray((bundle / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / name).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 differs"):
        create_runtime(settings, bundle, meta)
    (bundle / name).unlink()
    with pytest.raises(BundleError, match="no such file"):
        create_runtime(settings, bundle, meta)


def test_model_that_does_not_fit_the_metadata_is_refused(tiny_settings, tiny_bundle_dir, tmp_path):
    bundle = copy_bundle(tiny_bundle_dir, tmp_path)
    doc = json.loads((bundle / "metadata.json").read_text())
    doc["max_len"] = 30
    (bundle / "metadata.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="takes 20 indexes"):
        create_runtime(tiny_settings, bundle, load_metadata(bundle))


def test_not_a_tflite_file_is_a_bundle_error(tmp_path):
    junk = tmp_path / "model.tflite"
    junk.write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(BundleError, match="not a loadable"):
        LiteRTRuntime(junk)


def test_no_litert_package_is_a_configuration_error(tiny_bundle_dir, monkeypatch):
    # Both interpreter packages made unimportable (None in sys.modules blocks an import).
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(ConfigurationError, match="ai-edge-litert"):
        LiteRTRuntime(tiny_bundle_dir / "model.tflite")


def test_litert_serving_never_imports_tensorflow(tiny_bundle_dir, tiny_sqlite_path):
    script = textwrap.dedent(f"""
        import sys
        from toxic_service.settings import Settings
        from toxic_service.scoring import build_scorer
        s = build_scorer(Settings(bundle={str(tiny_bundle_dir)!r}, sqlite_path={str(tiny_sqlite_path)!r}, runtime="litert"))
        s.check_ready()
        print(s.score(["you idiot"])[0]["insult"] > 0.5)
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras")))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.split("\n")[:2] == ["True", "[]"]


@pytest.mark.parametrize("width", [6, 10, 40, 1000])
def test_word_groups_cover_every_row_in_order_within_the_width(width):
    from toxic_service.runtime.litert import _word_groups

    rows = np.random.default_rng(4).integers(0, 60, size=(37, 6), dtype=np.int32)
    rows[::4, :3] = 0  # padding, as the tokenizer pads
    groups = list(_word_groups(rows, width, np.unique(rows, return_inverse=True)))
    np.testing.assert_array_equal(np.concatenate([group for group, _, _ in groups]), rows)
    for group, words, slots in groups:
        assert len(words) <= width and len(np.unique(words)) == len(words)
        np.testing.assert_array_equal(words[slots], group)  # each position's slot holds its word
    # One group when the distinct words fit; more, and never an empty one, when they do not.
    assert (len(groups) == 1) == (len(np.unique(rows)) <= width) and all(len(g) for g, _, _ in groups)


def test_a_model_with_inputs_of_another_form_is_a_bundle_error():
    from toxic_service.runtime.litert import _input_roles

    def detail(shape, dtype=np.int32):
        return {"shape": np.array([max(d, 1) for d in shape]), "shape_signature": np.array(shape), "dtype": dtype}

    positions, words = _input_roles([detail([-1]), detail([-1, 20])], "m")
    assert list(positions["shape_signature"]) == [-1, 20] and list(words["shape_signature"]) == [-1]
    with pytest.raises(BundleError, match="int32"):
        _input_roles([detail([-1], np.float32), detail([-1, 20])], "m")
    with pytest.raises(BundleError, match="resizable batch"):
        _input_roles([detail([-1]), detail([4, 20])], "m")
    with pytest.raises(BundleError, match="resizable batch and word list"):
        _input_roles([detail([64]), detail([-1, 20])], "m")
    with pytest.raises(BundleError, match="expected one"):
        _input_roles([detail([-1, 20]), detail([-1, 20])], "m")


def test_keras_runtime_refuses_a_bundle_model_with_a_lambda_before_keras_loads_it(
    tiny_settings, tiny_bundle_dir, meta, tmp_path
):
    """A bundle's model.keras is input too: a code-carrying layer is refused from its config alone."""
    import zipfile

    from toxic_service.bundle import sha256_file

    bundle = copy_bundle(tiny_bundle_dir, tmp_path)
    model = bundle / "model.keras"
    with zipfile.ZipFile(model) as source:
        entries = {name: source.read(name) for name in source.namelist()}
    config = json.loads(entries["config.json"])
    dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
    dense["class_name"] = "Lambda"
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(model, "w") as target:
        for name, data in entries.items():
            target.writestr(name, data)
    doc = json.loads((bundle / "metadata.json").read_text())
    doc["model"]["files"]["model.keras"] = sha256_file(model)  # a consistent bundle: only the layer is wrong
    (bundle / "metadata.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=r"\(Lambda\)"):
        create_runtime(tiny_settings.replace(**{"runtime": "keras"}), bundle, load_metadata(bundle))
