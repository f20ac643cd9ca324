"""Bundle metadata: strict loading, the vocabulary check, and write_bundle's files and hashes."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading

import numpy as np
import pytest
from toxic_service.bundle import (
    JIGSAW_LABELS,
    JIGSAW_PERSPECTIVE_ATTRIBUTES,
    BundleMetadata,
    check_vocabulary,
    load_metadata,
    sha256_file,
    verify_model_file,
    write_bundle,
)
from toxic_service.errors import BundleError, VocabularyMismatch
from toxic_service.vocab.base import VocabularyInfo
from toxic_service.vocab.sqlite import SqliteVocabularyStore


@pytest.fixture()
def doc(tiny_bundle_dir):
    return json.loads((tiny_bundle_dir / "metadata.json").read_text())


def write_doc(tmp_path, doc) -> None:
    (tmp_path / "metadata.json").write_text(json.dumps(doc))


def test_tiny_bundle_round_trips(tiny_bundle_dir, tmp_path):
    meta = load_metadata(tiny_bundle_dir)
    assert meta.labels == JIGSAW_LABELS and meta.max_len == 20 and meta.oov_index is None
    meta.write(tmp_path)
    assert load_metadata(tmp_path) == meta


def test_tiny_bundle_matches_its_vocabulary(tiny_bundle_dir, tiny_sqlite_path):
    check_vocabulary(load_metadata(tiny_bundle_dir), SqliteVocabularyStore(tiny_sqlite_path).info())


def test_model_file_hashes_are_recorded(tiny_bundle_dir):
    meta = load_metadata(tiny_bundle_dir)
    assert set(meta.model_files) == {"model.tflite", "model.keras"}
    for name, digest in meta.model_files.items():
        assert sha256_file(tiny_bundle_dir / name) == digest
        assert verify_model_file(tiny_bundle_dir, meta, name) == tiny_bundle_dir / name


BROKEN = [
    (lambda d: d.pop("labels"), "missing field 'labels'"),
    (lambda d: d.update(labels=[]), "non-empty list"),
    (lambda d: d.update(labels=["a", "a"]), "distinct"),
    (lambda d: d.update(max_len="20"), "wrong type"),
    (lambda d: d.update(max_len=True), "wrong type"),
    (lambda d: d.update(max_len=0), "between 1 and 10000"),
    (lambda d: d.update(format_version=2), "format_version 2"),
    (lambda d: d.pop("vocabulary"), "missing field 'vocabulary'"),
    (lambda d: d["vocabulary"].pop("checksum"), "missing field 'checksum'"),
    (lambda d: d.update(oov_index=-1), "oov_index"),
    (lambda d: d.update(num_words="many"), "num_words"),
    (lambda d: d.update(trained_labels=["nope"]), "trained_labels"),
    (lambda d: d.update(tokenizer="keras"), "tokenizer"),
    (lambda d: d.update(perspective_attributes=["TOXICITY"]), "'perspective_attributes' must be an object"),
    (lambda d: d.update(perspective_attributes={"toxicity": "toxic"}), "not an attribute name"),
    (lambda d: d.update(perspective_attributes={"TOXICITY": "nope"}), "maps TOXICITY to 'nope'"),
    (lambda d: d.update(trained_labels=["toxic"], perspective_attributes={"INSULT": "insult"}), "not a label the model"),
    (lambda d: d.update(languages=[]), "'languages' must be a non-empty list"),
    (lambda d: d.update(languages="en"), "'languages' must be a non-empty list"),
    (lambda d: d.update(languages=["English"]), "'languages' must be a non-empty list"),
]


@pytest.mark.parametrize(("breakage", "message"), BROKEN, ids=[m for _, m in BROKEN])
def test_malformed_metadata_is_a_bundle_error_naming_the_defect(tmp_path, doc, breakage, message):
    breakage(doc)
    write_doc(tmp_path, doc)
    with pytest.raises(BundleError, match=message):
        load_metadata(tmp_path)


def test_a_new_bundle_gets_the_jigsaw_attribute_map_and_english(tiny_bundle_dir, tmp_path):
    meta = load_metadata(tiny_bundle_dir)
    fresh = BundleMetadata(labels=meta.labels, max_len=meta.max_len, vocabulary_checksum=meta.vocabulary_checksum,
                           vocabulary_size=meta.vocabulary_size, trained_labels=meta.labels)
    written = write_bundle(tmp_path, tflite_bytes=(tiny_bundle_dir / "model.tflite").read_bytes(), metadata=fresh)
    on_disk = json.loads((tmp_path / "metadata.json").read_text())
    assert on_disk["perspective_attributes"] == JIGSAW_PERSPECTIVE_ATTRIBUTES
    assert on_disk["languages"] == ["en"]
    assert load_metadata(tmp_path) == written


def test_an_old_bundle_without_the_fields_gets_the_default_for_its_trained_labels(tmp_path, doc):
    doc.pop("perspective_attributes", None)
    doc.pop("languages", None)
    doc["trained_labels"] = ["toxic", "insult"]
    write_doc(tmp_path, doc)
    meta = load_metadata(tmp_path)
    assert meta.perspective_attributes == {"TOXICITY": "toxic", "INSULT": "insult"}
    assert meta.languages == ("en",)


def test_the_attribute_map_and_languages_are_overridable(tmp_path, doc):
    doc["perspective_attributes"] = {"TOXICITY": "toxic", "MEAN": "insult"}
    doc["languages"] = ["en", "de-CH"]
    write_doc(tmp_path, doc)
    meta = load_metadata(tmp_path)
    assert meta.perspective_attributes == {"TOXICITY": "toxic", "MEAN": "insult"}
    assert meta.languages == ("en", "de-CH")
    meta.write(tmp_path / "again")
    assert load_metadata(tmp_path / "again") == meta


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", "\udcff"], ids=["empty", "bad-json", "array", "bad-utf8"])
def test_unreadable_metadata_is_a_bundle_error(tmp_path, content):
    (tmp_path / "metadata.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(BundleError):
        load_metadata(tmp_path)


def test_no_metadata_says_how_to_make_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="model import"):
        load_metadata(tmp_path)


def test_check_vocabulary_names_both_sides(tiny_bundle_dir):
    meta = load_metadata(tiny_bundle_dir)
    other = VocabularyInfo(checksum="sha256:" + "0" * 64, size=7, index_base=1, source="some other list")
    with pytest.raises(VocabularyMismatch) as err:
        check_vocabulary(meta, other)
    assert "some other list" in str(err.value) and meta.vocabulary_checksum[:19] in str(err.value)


def test_write_bundle_writes_files_and_hashes_and_drops_stale_ones(tiny_bundle_dir, tmp_path):
    meta = load_metadata(tiny_bundle_dir)
    target = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, target)
    tflite = (tiny_bundle_dir / "model.tflite").read_bytes()
    written = write_bundle(target, tflite_bytes=tflite, metadata=meta)
    assert set(written.model_files) == {"model.tflite"}
    assert not (target / "model.keras").exists()  # no longer described by the metadata
    assert load_metadata(target) == written
    assert sorted(p.name for p in target.iterdir()) == ["metadata.json", "model.tflite"]  # no staging left


def test_write_bundle_needs_a_model(tmp_path, tiny_bundle_dir):
    with pytest.raises(BundleError, match="needs"):
        write_bundle(tmp_path, metadata=load_metadata(tiny_bundle_dir))
    assert list(tmp_path.iterdir()) == []


# Keras 3.15 itself calls np.array() on a tensor in a way NumPy 2.4 deprecates; not ours to fix.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_keras_model_converts_to_an_equal_tflite_model(tmp_path, tiny_bundle_dir):
    pytest.importorskip("tensorflow", reason="TensorFlow (the keras extra) is not installed")
    import fixtures_builder
    from ai_edge_litert.interpreter import Interpreter
    from toxic_service.importers.keras_model import keras_to_tflite

    model = fixtures_builder.build_keras_model()
    meta: BundleMetadata = load_metadata(tiny_bundle_dir)
    written = write_bundle(tmp_path, tflite_bytes=keras_to_tflite(model), keras_model=model, metadata=meta)
    assert set(written.model_files) == {"model.tflite", "model.keras"}
    x = np.random.default_rng(1).integers(0, meta.vocabulary_size + 1, size=(4, meta.max_len), dtype=np.int32)
    interpreter = Interpreter(model_path=str(tmp_path / "model.tflite"))
    detail = interpreter.get_input_details()[0]
    assert list(detail["shape_signature"]) == [-1, meta.max_len]  # resizable batch
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not any(name.startswith("Flex") for name in ops)  # built-in ops only
    interpreter.resize_tensor_input(detail["index"], [4, meta.max_len])
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-5)


_opened: list[str] | None = None  # set by the test below: the files Python opens meanwhile


def _record_opens(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_record_opens)  # an audit hook cannot be removed: it records only while _opened is a list


def test_the_model_file_is_hashed_once_per_worker_start_whatever_the_threads(tiny_settings):
    """build_scorer verifies model.tflite once; the runtimes of every thread load the verified path without hashing."""
    global _opened
    from toxic_service.scoring import build_scorer

    model = str(tiny_settings.bundle_dir / "model.tflite")
    _opened = []
    try:
        scorer = build_scorer(tiny_settings.replace(cache_entries=0))
        scorer.runtime()  # what the worker does at start (api/state.py)
        other = threading.Thread(target=scorer.runtime)  # a second thread gets its own interpreter
        other.start()
        other.join()
        scorer.score(["you idiot"])
        opened = list(_opened)
        threads = len(scorer._runtimes)
    finally:
        _opened = None
    scorer.close()
    assert threads == 2
    # Python opens the file only to hash it (the interpreter reads it in C++, which no audit hook sees).
    assert opened.count(model) == 1, opened
