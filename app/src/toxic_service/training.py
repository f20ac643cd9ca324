"""`train`: the seed series' CNN over GloVe-initialised embeddings, on a Jigsaw-format CSV.

Model: Embedding (GloVe 6B 50d rows, index = row + 1, row 0 = padding)
-> Conv1D -> GlobalMaxPool -> Dense -> Dropout -> Dense(6, sigmoid). Labels
absent from the CSV are masked out of the loss and left untrained; the
metadata's `trained_labels` names the ones learned.

Deterministic: one seed for Python, NumPy and TensorFlow, op determinism on,
one thread for TensorFlow's pools (set before TensorFlow starts any), and
the held-out split drawn from the same seed. Keras 3 (TensorFlow's default)
is used: the CNN has no layer whose meaning changed between Keras 2 and 3.
TensorFlow is imported inside the functions, never at module import.
"""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toxic_service.auc import roc_auc
from toxic_service.bundle import JIGSAW_LABELS, BundleMetadata, TokenizerConfig
from toxic_service.importers import InputFileError
from toxic_service.text import encode, pad, tokenize

MAX_LEN = 100


@dataclass(frozen=True)
class TrainConfig:
    csv_path: Path
    kumo: Path | None
    out_dir: Path
    vocab_path: Path
    vocab_size: int = 100_000
    epochs: int = 4
    batch_size: int = 64
    seed: int = 1337
    holdout: float = 0.2
    filters: int = 128
    kernel_size: int = 5
    dense_units: int = 64
    dropout: float = 0.3
    learning_rate: float = 1e-3
    train_embedding: bool = False
    max_len: int = MAX_LEN
    licence: str = "weights: derived from GloVe 6B (PDDL-1.0) and the training data (check its terms)"


@dataclass
class Dataset:
    texts: list[str]
    labels: np.ndarray  # (n, 6) float32, absent columns 0
    present: tuple[str, ...]  # label names found in the CSV, in JIGSAW_LABELS order


@dataclass
class TrainResult:
    auc: dict[str, float | None]
    n_train: int
    n_holdout: int
    vocab_checksum: str
    tflite_bytes: int
    max_diff: float
    history: list[dict[str, float]] = field(default_factory=list)


def read_jigsaw_csv(path: Path) -> Dataset:
    """`id, comment_text` and any of the six 0/1 label columns; at least one label must be present."""
    path = Path(path)
    csv.field_size_limit(sys.maxsize)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            if "comment_text" not in columns:
                raise InputFileError(
                    f"{path}: no 'comment_text' column (Jigsaw format: id, comment_text, {', '.join(JIGSAW_LABELS)})"
                )
            present = tuple(label for label in JIGSAW_LABELS if label in columns)
            if not present:
                raise InputFileError(f"{path}: none of the label columns {', '.join(JIGSAW_LABELS)}")
            texts: list[str] = []
            rows: list[list[float]] = []
            for lineno, row in enumerate(reader, 2):
                values = []
                for label in JIGSAW_LABELS:
                    if label not in present:
                        values.append(0.0)
                        continue
                    raw = (row.get(label) or "").strip()
                    if raw not in ("0", "1"):
                        raise InputFileError(f"{path}:{lineno}: {label} is {raw!r}, expected 0 or 1")
                    values.append(float(raw))
                texts.append(row.get("comment_text") or "")
                rows.append(values)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(f"{path}: cannot read as a UTF-8 CSV ({exc})") from exc
    if len(texts) < 10:
        raise InputFileError(f"{path}: {len(texts)} rows; need at least 10 to train and hold some out")
    return Dataset(texts=texts, labels=np.asarray(rows, dtype=np.float32), present=present)


def split_indices(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_hold = max(1, int(round(n * holdout)))
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])


def _determinism(seed: int) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["PYTHONHASHSEED"] = str(seed)
    os.environ["TF_DETERMINISTIC_OPS"] = "1"
    import keras
    import tensorflow as tf

    try:  # only possible before TensorFlow has started its thread pools
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    except RuntimeError:
        pass
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return keras


def build_model(keras: Any, embedding: np.ndarray, cfg: TrainConfig, n_labels: int) -> Any:
    inputs = keras.Input(shape=(cfg.max_len,), dtype="int32", name="indexes")
    x = keras.layers.Embedding(
        embedding.shape[0],
        embedding.shape[1],
        # Loaded with set_weights below: a Constant initializer would copy the whole matrix
        # into the saved config (a 100k-word model.keras grew to 124 MB).
        embeddings_initializer="zeros",
        trainable=cfg.train_embedding,
        name="glove",
    )(inputs)
    x = keras.layers.Conv1D(cfg.filters, cfg.kernel_size, activation="relu", name="conv")(x)
    x = keras.layers.GlobalMaxPooling1D(name="pool")(x)
    x = keras.layers.Dense(cfg.dense_units, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
    outputs = keras.layers.Dense(n_labels, activation="sigmoid", name="scores")(x)
    model = keras.Model(inputs, outputs, name="toxic_cnn")
    model.get_layer("glove").set_weights([embedding])
    return model


def masked_bce(keras: Any, mask: np.ndarray):
    """Binary cross-entropy over the labels present in the CSV only: absent ones get no gradient."""
    ops = keras.ops
    weights = ops.convert_to_tensor(mask.astype("float32"))
    total = float(mask.sum())

    def loss(y_true, y_pred):
        p = ops.clip(y_pred, 1e-7, 1 - 1e-7)
        per_label = -(y_true * ops.log(p) + (1 - y_true) * ops.log(1 - p))
        return ops.sum(per_label * weights, axis=-1) / total

    return loss


def train(cfg: TrainConfig, log=print) -> TrainResult:
    from toxic_service.bundle import write_bundle
    from toxic_service.errors import VocabularyError
    from toxic_service.importers import glove
    from toxic_service.importers.keras_model import keras_to_tflite, tflite_predict
    from toxic_service.vocab.checksum import vocabulary_checksum
    from toxic_service.vocab.meta import read_meta
    from toxic_service.vocab.sqlite import write_sqlite

    data = read_jigsaw_csv(cfg.csv_path)
    log(f"read {len(data.texts)} comments from {cfg.csv_path}; labels present: {', '.join(data.present)}")
    words = glove.read_kumo_words(cfg.kumo)[: cfg.vocab_size]
    vectors = glove.read_kumo_vectors(cfg.kumo, limit=len(words))
    pairs = glove.pairs_from_words(words, 1)
    checksum = vocabulary_checksum(pairs)
    source = glove.KUMO_SOURCE + f", first {len(words)} words"
    embedding = np.vstack([np.zeros((1, vectors.shape[1]), np.float32), vectors])

    meta = BundleMetadata(
        labels=JIGSAW_LABELS,
        trained_labels=data.present,
        max_len=cfg.max_len,
        vocabulary_checksum=checksum,
        vocabulary_size=len(pairs),
        vocabulary_source=source,
        index_base=1,
        oov_index=None,
        num_words=None,
        tokenizer=TokenizerConfig(),
        model_source=f"toxic-service train on {Path(cfg.csv_path).name} (seed {cfg.seed})",
        model_licence=cfg.licence,
    )
    mapping = dict(pairs)
    x = pad([encode(tokenize(t, meta.tokenizer), mapping, meta) for t in data.texts], cfg.max_len)
    known = int((x > 0).sum())
    log(f"tokenised: {known} indexes kept of the {cfg.vocab_size} most frequent GloVe words")
    train_idx, hold_idx = split_indices(len(x), cfg.holdout, cfg.seed)

    keras = _determinism(cfg.seed)
    # From here on the labels are the new bundle's (Jigsaw's, in the CSV's column names).
    mask = np.array([label in data.present for label in meta.labels])
    model = build_model(keras, embedding, cfg, len(meta.labels))
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=masked_bce(keras, mask))
    log(
        f"training {model.count_params()} parameters ({'trainable' if cfg.train_embedding else 'frozen'} embedding) "
        f"on {len(train_idx)} comments, {cfg.epochs} epochs"
    )
    fit = model.fit(
        x[train_idx],
        data.labels[train_idx],
        validation_data=(x[hold_idx], data.labels[hold_idx]),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        shuffle=True,
        verbose=2,
    )
    history = [{k: float(v[i]) for k, v in fit.history.items()} for i in range(cfg.epochs)]

    # A clean copy without the compiled custom loss, so the saved model.keras loads anywhere.
    clean = build_model(keras, embedding, cfg, len(meta.labels))
    clean.set_weights(model.get_weights())
    scores = np.asarray(clean.predict(x[hold_idx], batch_size=256, verbose=0))
    auc: dict[str, float | None] = {}
    for j, label in enumerate(meta.labels):
        y = data.labels[hold_idx, j]
        auc[label] = roc_auc(y, scores[:, j]) if label in data.present and 0 < y.sum() < len(y) else None

    tflite_bytes = keras_to_tflite(clean)
    max_diff = float(np.abs(tflite_predict(tflite_bytes, x[hold_idx]) - scores).max())
    if max_diff > 1e-4:
        raise RuntimeError(f"the TFLite conversion differs from Keras by {max_diff:.3g}; nothing written")
    write_bundle(cfg.out_dir, tflite_bytes=tflite_bytes, keras_model=clean, metadata=meta)
    current = None
    if cfg.vocab_path.exists():
        try:
            current = read_meta(cfg.vocab_path)["checksum"]
        except VocabularyError:  # not a vocabulary (or no meta table): replaced below
            current = None
    if current != checksum:
        write_sqlite(cfg.vocab_path, pairs, source=source, index_base=1)
    return TrainResult(
        auc=auc,
        n_train=len(train_idx),
        n_holdout=len(hold_idx),
        vocab_checksum=checksum,
        tflite_bytes=len(tflite_bytes),
        max_diff=max_diff,
        history=history,
    )
