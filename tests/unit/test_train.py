"""`train` on a tiny Jigsaw-format CSV with a tiny kumo-layout GloVe: bundle, vocabulary, report, determinism,
and a held-out AUC that means something: high where the labels follow the text, chance where they are shuffled."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("pyarrow")

from test_importers import make_kumo_dir  # noqa: E402
from toxic_service.bundle import load_metadata  # noqa: E402
from toxic_service.vocab.checksum import vocabulary_checksum  # noqa: E402
from toxic_service.vocab.sqlite import SqliteVocabularyStore  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

WORDS = ["the", "you", "are", "a", "idiot", "stupid", "thanks", "good", "edit", "great", "moron", "nice"]
RUDE = ("idiot", "stupid")
# --vocab-size 10 keeps WORDS[:10]: "moron" and "nice" are unknown, dropped like any unknown word.
FILLER = ("the", "you", "are", "a", "thanks", "good", "edit", "great", "moron", "nice")
ROWS, HOLDOUT = 400, 0.25
# 16 dimensions: 12 random vectors are then in general position, so the rude words can be told apart
# from the filler by the frozen embedding (with 4 the CNN overfits and held out ~0.88).
DIM = 16


def _rows(*, shuffled: bool) -> list[tuple[str, str, int]]:
    """3-8 filler words; in about half the rows one rude word at a random place: insult = that row is rude."""
    rng = np.random.default_rng(11)
    texts, labels = [], []
    for _ in range(ROWS):
        words = [str(w) for w in rng.choice(FILLER, size=int(rng.integers(3, 9)))]
        rude = bool(rng.integers(0, 2))
        if rude:
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(RUDE)))
        texts.append(" ".join(words))
        labels.append(int(rude))
    if shuffled:  # the same texts and class balance, labels no longer related to the text
        labels = [int(v) for v in np.random.default_rng(12).permutation(labels)]
    return [(f"r{i}", text, label) for i, (text, label) in enumerate(zip(texts, labels, strict=True))]


def _csv(path: Path, *, shuffled: bool = False) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "comment_text", "insult"])  # only one of the six labels
        writer.writerows(_rows(shuffled=shuffled))
    return path


def _start_training(root: Path, name: str, csv_path: Path) -> tuple[Path, subprocess.Popen]:
    out = root / name
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_USE_LEGACY_KERAS", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "toxic_service",
            "train",
            str(csv_path),
            "--kumo",
            str(root / "kumo"),
            "--out",
            str(out / "model"),
            "--epochs",
            "10",
            "--batch-size",
            "16",
            "--vocab-size",
            "10",
            "--seed",
            "7",
            "--holdout",
            str(HOLDOUT),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return out, proc


def _finish_training(out: Path, proc: subprocess.Popen) -> Path:
    try:
        stdout, stderr = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    assert "insult" in stdout and "not trained" in stdout  # the printed AUC table
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train")
    make_kumo_dir(root / "kumo", WORDS, dim=DIM)
    signal, shuffled = _csv(root / "signal.csv"), _csv(root / "shuffled.csv", shuffled=True)
    # The three runs at once: each spends much of its time starting TensorFlow on one thread.
    started = {name: _start_training(root, name, data) for name, data in (("a", signal), ("b", signal), ("shuffled", shuffled))}
    try:
        return {name: _finish_training(*run) for name, run in started.items()}
    finally:
        for _, proc in started.values():  # one failed: end the others rather than leave them running
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def trained_twice(runs) -> tuple[Path, Path]:
    return runs["a"], runs["b"]


def _report(out: Path) -> dict:
    return json.loads((out / "model" / "train_report.json").read_text())


def test_writes_bundle_vocabulary_and_report(trained_twice):
    out, _ = trained_twice
    meta = load_metadata(out / "model")
    assert meta.trained_labels == ("insult",) and len(meta.labels) == 6
    assert {"model.tflite", "model.keras"} <= set(meta.model_files)
    store = SqliteVocabularyStore(out / "vocab.sqlite")
    # --vocab-size 10: the 10 most frequent GloVe rows, index = row + 1.
    assert meta.vocabulary_checksum == store.info().checksum == vocabulary_checksum([(w, i) for i, w in enumerate(WORDS[:10], 1)])
    report = _report(out)
    assert set(report["auc"]) == set(meta.labels) and report["auc"]["toxic"] is None
    assert (report["n_train"], report["n_holdout"]) == (ROWS * (1 - HOLDOUT), ROWS * HOLDOUT)


def test_held_out_auc_is_high_where_the_labels_follow_the_text(trained_twice):
    # Separable by construction (a row is rude exactly when it holds a rude word): a working
    # train-and-evaluate path learns it; inverted, misaligned or unrelated scores do not get near.
    assert _report(trained_twice[0])["auc"]["insult"] > 0.9


def test_held_out_auc_stays_at_chance_with_shuffled_labels(runs):
    # The control: labels unrelated to the text must not score above chance on held-out rows. A
    # split that leaks training rows into the held-out ones would show the model's memory here.
    # Chance over 100 held-out rows (~50/50) has a standard deviation of 0.058: 0.2 is 3.4 of them.
    report = _report(runs["shuffled"])
    assert abs(report["auc"]["insult"] - 0.5) < 0.2, report["auc"]["insult"]


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
