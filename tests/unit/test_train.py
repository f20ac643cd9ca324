"""`train` on a tiny Jigsaw-format CSV with a tiny kumo-layout GloVe: bundle, vocabulary, report, determinism."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("pyarrow")

from test_importers import make_kumo_dir  # noqa: E402
from toxic_service.bundle import load_metadata  # noqa: E402
from toxic_service.vocab.checksum import vocabulary_checksum  # noqa: E402
from toxic_service.vocab.sqlite import SqliteVocabularyStore  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

WORDS = ["the", "you", "are", "a", "idiot", "stupid", "thanks", "good", "edit", "great", "moron", "nice"]


def _csv(path: Path) -> Path:
    rows = []
    for i in range(40):
        rude = i % 2 == 0
        text = "you are a stupid idiot" if rude else "thanks the edit is good"
        rows.append((f"r{i}", text + (" moron" if rude and i % 4 == 0 else " nice"), int(rude)))
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "comment_text", "insult"])  # only one of the six labels
        writer.writerows(rows)
    return path


def _train(root: Path, name: str) -> Path:
    out = root / name
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_USE_LEGACY_KERAS", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "toxic_service",
            "train",
            str(root / "train.csv"),
            "--kumo",
            str(root / "kumo"),
            "--out",
            str(out / "model"),
            "--epochs",
            "1",
            "--vocab-size",
            "10",
            "--seed",
            "7",
            "--holdout",
            "0.25",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "insult" in proc.stdout and "not trained" in proc.stdout  # the printed AUC table
    return out


@pytest.fixture(scope="module")
def trained_twice(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    make_kumo_dir(root / "kumo", WORDS, dim=4)
    _csv(root / "train.csv")
    return _train(root, "a"), _train(root, "b")


def test_writes_bundle_vocabulary_and_report(trained_twice):
    out, _ = trained_twice
    meta = load_metadata(out / "model")
    assert meta.trained_labels == ("insult",) and len(meta.labels) == 6
    assert {"model.tflite", "model.keras"} <= set(meta.model_files)
    store = SqliteVocabularyStore(out / "vocab.sqlite")
    # --vocab-size 10: the 10 most frequent GloVe rows, index = row + 1.
    assert meta.vocabulary_checksum == store.info().checksum == vocabulary_checksum([(w, i) for i, w in enumerate(WORDS[:10], 1)])
    report = json.loads((out / "model" / "train_report.json").read_text())
    assert set(report["auc"]) == set(meta.labels) and report["auc"]["toxic"] is None
    assert 0.0 <= report["auc"]["insult"] <= 1.0


def test_same_seed_gives_identical_weights(trained_twice):
    a, b = trained_twice
    # The sha256 of model.tflite covers every weight.
    assert load_metadata(a / "model").model_files["model.tflite"] == load_metadata(b / "model").model_files["model.tflite"]


def test_csv_without_labels_is_refused(tmp_path):
    from toxic_service.importers import InputFileError
    from toxic_service.training import read_jigsaw_csv

    path = tmp_path / "bad.csv"
    path.write_text("id,comment_text\n1,hello\n")
    with pytest.raises(InputFileError, match="label columns"):
        read_jigsaw_csv(path)
