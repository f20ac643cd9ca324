"""Builds the tiny real model bundle and vocabulary the tests share.

The model is a real Keras model converted to a real .tflite file, but its
weights are set by hand (not trained) so that its behaviour is known:
insult words ("idiot", "stupid", ...) raise `toxic` and `insult`, threat
words ("kill", ...) raise `threat`, polite words ("thank", ...) lower all of
them. Tests can then assert behaviour ("you idiot" scores above 0.5 as an
insult, "thank you" below) without hard-coding any score.

TensorFlow runs once per machine: the files are cached under
<repo>/.cache/test-fixtures/<hash of this file and the app code it uses>/
(TOXIC_TEST_FIXTURE_CACHE overrides the root). Importable by any test suite:

    from fixtures_builder import build_tiny_fixtures
    paths = build_tiny_fixtures()   # TinyFixtures(bundle_dir, sqlite_path, pairs)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
APP_SRC = REPO / "app" / "src" / "toxic_service"
MAX_LEN = 20
EMBED_DIM = 8
LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
SOURCE = "tests/fixtures_builder.py (hand-set weights)"

INSULTS = ("idiot", "stupid", "moron", "dumb", "loser")
THREATS = ("kill", "hurt", "die")
POLITE = ("thank", "thanks", "please", "helpful", "good", "great")
NEUTRAL = (
    "the", "you", "i", "a", "to", "and", "of", "is", "it", "for", "this", "that", "are", "edit",
    "article", "page", "will", "your", "not", "what", "references", "look", "now", "café", "naïve",
)  # fmt: skip
WORDS = NEUTRAL[:2] + INSULTS + THREATS + POLITE + NEUTRAL[2:]

# Embedding dimensions with a meaning; dimensions 3.. carry small deterministic noise.
DIM_INSULT, DIM_THREAT, DIM_POLITE = 0, 1, 2
# Dense layer: per label, weights on (insult, threat, polite) and a bias.
LABEL_WEIGHTS = {
    "toxic": (2.0, 2.0, -2.0, -1.5),
    "severe_toxic": (1.0, 1.0, -2.0, -4.0),
    "obscene": (1.0, 0.0, -1.5, -3.0),
    "threat": (0.0, 2.5, -1.5, -2.0),
    "insult": (2.5, 0.5, -2.5, -1.5),
    "identity_hate": (0.5, 0.0, -1.5, -4.0),
}


def tiny_vocab_pairs() -> list[tuple[str, int]]:
    """(word, index) with Keras-style indexes from 1; 0 is padding."""
    return [(word, i) for i, word in enumerate(WORDS, start=1)]


def _weights() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20240601)
    embedding = np.zeros((len(WORDS) + 1, EMBED_DIM), dtype=np.float32)  # row 0: padding
    embedding[1:, 3:] = rng.uniform(-0.3, 0.3, size=(len(WORDS), EMBED_DIM - 3))
    for word, index in tiny_vocab_pairs():
        if word in INSULTS:
            embedding[index, DIM_INSULT] = 3.0
        elif word in THREATS:
            embedding[index, DIM_THREAT] = 3.0
        elif word in POLITE:
            embedding[index, DIM_POLITE] = 3.0
    kernel = np.zeros((EMBED_DIM, len(LABELS)), dtype=np.float32)
    bias = np.zeros(len(LABELS), dtype=np.float32)
    for j, label in enumerate(LABELS):
        w_insult, w_threat, w_polite, b = LABEL_WEIGHTS[label]
        kernel[DIM_INSULT, j], kernel[DIM_THREAT, j], kernel[DIM_POLITE, j] = w_insult, w_threat, w_polite
        bias[j] = b
    # Small weights on the noise dimensions, so unrelated words move scores a little (a real computation).
    kernel[3:, :] = rng.uniform(-0.2, 0.2, size=(EMBED_DIM - 3, len(LABELS)))
    return embedding, kernel, bias


def build_keras_model():
    """The tiny Keras 3 model with its hand-set weights."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    inputs = keras.Input(shape=(MAX_LEN,), dtype="int32", name="indexes")
    x = keras.layers.Embedding(len(WORDS) + 1, EMBED_DIM, name="embedding")(inputs)
    x = keras.layers.GlobalMaxPooling1D(name="pool")(x)
    outputs = keras.layers.Dense(len(LABELS), activation="sigmoid", name="scores")(x)
    model = keras.Model(inputs, outputs, name="tiny_toxic")
    embedding, kernel, bias = _weights()
    model.get_layer("embedding").set_weights([embedding])
    model.get_layer("scores").set_weights([kernel, bias])
    return model


@dataclass(frozen=True)
class TinyFixtures:
    root: Path
    bundle_dir: Path
    sqlite_path: Path
    pairs: tuple[tuple[str, int], ...]


def _source_hash() -> str:
    digest = hashlib.sha256()
    for path in (
        Path(__file__),
        APP_SRC / "convert.py",
        APP_SRC / "bundle.py",
        APP_SRC / "vocab" / "sqlite.py",
        APP_SRC / "vocab" / "checksum.py",
    ):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("TOXIC_TEST_FIXTURE_CACHE") or REPO / ".cache" / "test-fixtures")


def _build(target: Path) -> None:
    from toxic_service.bundle import BundleMetadata, TokenizerConfig
    from toxic_service.convert import keras_to_tflite, write_bundle
    from toxic_service.vocab.sqlite import write_sqlite

    pairs = tiny_vocab_pairs()
    info = write_sqlite(target / "vocab.sqlite", pairs, source=SOURCE, index_base=1)
    model = build_keras_model()
    meta = BundleMetadata(
        labels=LABELS,
        max_len=MAX_LEN,
        vocabulary_checksum=info.checksum,
        vocabulary_size=info.size,
        index_base=1,
        pad_index=0,
        oov_index=None,
        num_words=None,
        tokenizer=TokenizerConfig(),
        trained_labels=LABELS,
        vocabulary_source=SOURCE,
        model_source=SOURCE,
        model_licence="MIT",
    )
    write_bundle(target / "model", tflite_bytes=keras_to_tflite(model), keras_model=model, metadata=meta)


def build_tiny_fixtures() -> TinyFixtures:
    """Build once per machine (per source hash); later calls return the cached files."""
    root = cache_root()
    final = root / _source_hash()
    if not (final / "model" / "metadata.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
        try:
            _build(staging)
            staging.chmod(0o755)  # mkdtemp makes it 0700; service users in other tests must read it
            try:
                os.rename(staging, final)  # atomic; a concurrent builder may have won
            except OSError:
                if not (final / "model" / "metadata.json").is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return TinyFixtures(
        root=final, bundle_dir=final / "model", sqlite_path=final / "vocab.sqlite", pairs=tuple(tiny_vocab_pairs())
    )


if __name__ == "__main__":
    print(build_tiny_fixtures())
