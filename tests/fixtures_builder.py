"""Builds the tiny real model bundle and vocabulary the tests share.

The model is a real Keras model converted to a real .tflite file, but its
weights are set by hand (not trained) so that its behaviour is known:
insult words ("idiot", "stupid", ...) raise `toxic` and `insult`, threat
words ("kill", ...) raise `threat`, polite words ("thank", ...) lower all of
them. Tests can then assert behaviour ("you idiot" scores above 0.5 as an
insult, "thank you" below) without hard-coding any score.

It is Embedding -> LSTM -> Dense, not an order-blind pooling model, so that a
scorer which reverses words, drops repeats, pads at the wrong end or keeps the
wrong end of a long text gives different scores (tests/unit/test_scoring.py
compares the served scores with this Keras model's own). Each hand-set unit
adds up its kind of word with a forget gate below 1, so a word counts once
per occurrence and less the further it is from the end; the padding row
(all zeros) adds nothing but still decays what came before. A few more units
with small deterministic random weights mix every input dimension and step,
so unrelated words and their order move the scores a little too.

The LSTM is unrolled (`unroll=True`): that converts to built-in ops with a
resizable batch, as LiteRT needs (importers/keras_model.py explains why).

TensorFlow runs once per machine: the files are cached under
<repo>/.cache/test-fixtures/<hash of this file, the app code it uses, the labels>/
(TOXIC_TEST_FIXTURE_CACHE overrides the root). Importable by any test suite:

    from fixtures_builder import build_tiny_fixtures
    paths = build_tiny_fixtures()   # TinyFixtures(bundle_dir, sqlite_path, pairs, labels)
    seven = build_tiny_fixtures(labels=LABELS + ("spam",))  # any label set; unknown labels act like `toxic`
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
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
FEATURE = 3.0  # an insult, threat or polite word's value on its dimension
# Dense layer: per label, weights on the LSTM's (insult, threat, polite) units and a bias.
LABEL_WEIGHTS = {
    "toxic": (2.0, 2.0, -2.0, -1.5),
    "severe_toxic": (1.0, 1.0, -2.0, -4.0),
    "obscene": (1.0, 0.0, -1.5, -3.0),
    "threat": (0.0, 2.5, -1.5, -2.0),
    "insult": (2.5, 0.5, -2.5, -1.5),
    "identity_hate": (0.5, 0.0, -1.5, -4.0),
}
# A label the table does not know (a 7-label test bundle) gets `toxic`'s weights: it separates
# an abusive comment from a polite one like the others, so every gate that checks that passes.
DEFAULT_LABEL_WEIGHTS = LABEL_WEIGHTS["toxic"]

# LSTM: units 0-2 count insult, threat and polite words; the others are the noise units.
UNITS = 8
GATE_OPEN = 3.0  # bias of the input and output gates: sigmoid(3) = 0.95
FORGET_BIAS = 3.0  # sigmoid(3) = 0.95 per step: a word 19 steps back counts 0.4 of the last one
CANDIDATE_GAIN = 0.5  # one kind word adds i * tanh(0.5 * 3) = 0.86 to its unit's cell
# The table's weights are written for a kind word counting FEATURE (3.0); one such word as the last
# gives h = 0.95 * tanh(0.86) = 0.66 on its unit, so the weights are scaled by about 3.0 / 0.66.
DENSE_SCALE = 4.5


def tiny_vocab_pairs() -> list[tuple[str, int]]:
    """(word, index) with Keras-style indexes from 1; 0 is padding."""
    return [(word, i) for i, word in enumerate(WORDS, start=1)]


def _embedding(rng: np.random.Generator) -> np.ndarray:
    embedding = np.zeros((len(WORDS) + 1, EMBED_DIM), dtype=np.float32)  # row 0: padding
    embedding[1:, 3:] = rng.uniform(-0.3, 0.3, size=(len(WORDS), EMBED_DIM - 3))
    for word, index in tiny_vocab_pairs():
        if word in INSULTS:
            embedding[index, DIM_INSULT] = FEATURE
        elif word in THREATS:
            embedding[index, DIM_THREAT] = FEATURE
        elif word in POLITE:
            embedding[index, DIM_POLITE] = FEATURE
    return embedding


def _lstm(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keras LSTM weights (kernel, recurrent_kernel, bias), gate blocks in Keras order i, f, c, o."""
    u = UNITS
    i, f, c, o = (slice(k * u, (k + 1) * u) for k in range(4))
    kernel = np.zeros((EMBED_DIM, 4 * u), dtype=np.float32)
    recurrent = np.zeros((u, 4 * u), dtype=np.float32)
    bias = np.zeros(4 * u, dtype=np.float32)
    bias[i], bias[f], bias[o] = GATE_OPEN, FORGET_BIAS, GATE_OPEN
    for unit, dim in enumerate((DIM_INSULT, DIM_THREAT, DIM_POLITE)):
        kernel[dim, c.start + unit] = CANDIDATE_GAIN
    # Noise units: every input dimension and the previous state feed all their gates.
    noise = [k * u + unit for k in range(4) for unit in range(3, u)]
    kernel[:, noise] = rng.uniform(-0.5, 0.5, size=(EMBED_DIM, len(noise)))
    recurrent[:, noise] = rng.uniform(-0.5, 0.5, size=(u, len(noise)))
    return kernel, recurrent, bias


def _dense(rng: np.random.Generator, labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    kernel = np.zeros((UNITS, len(labels)), dtype=np.float32)
    bias = np.zeros(len(labels), dtype=np.float32)
    for j, label in enumerate(labels):
        w_insult, w_threat, w_polite, b = LABEL_WEIGHTS.get(label, DEFAULT_LABEL_WEIGHTS)
        kernel[:3, j] = np.array((w_insult, w_threat, w_polite)) * DENSE_SCALE
        bias[j] = b
    # Small weights on the noise units, so unrelated words move scores a little (a real computation).
    kernel[3:, :] = rng.uniform(-0.3, 0.3, size=(UNITS - 3, len(labels)))
    return kernel, bias


def build_keras_model(labels: tuple[str, ...] = LABELS):
    """The tiny Keras 3 model with its hand-set weights (the same weights on every call)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    labels = tuple(labels)
    inputs = keras.Input(shape=(MAX_LEN,), dtype="int32", name="indexes")
    x = keras.layers.Embedding(len(WORDS) + 1, EMBED_DIM, name="embedding")(inputs)
    x = keras.layers.LSTM(UNITS, unroll=True, name="lstm")(x)
    outputs = keras.layers.Dense(len(labels), activation="sigmoid", name="scores")(x)
    model = keras.Model(inputs, outputs, name="tiny_toxic")
    # One generator in a fixed order: the noise is the same whatever the labels (bar the Dense columns).
    rng = np.random.default_rng(20240601)
    model.get_layer("embedding").set_weights([_embedding(rng)])
    model.get_layer("lstm").set_weights(list(_lstm(rng)))
    model.get_layer("scores").set_weights(list(_dense(rng, labels)))
    return model


@dataclass(frozen=True)
class TinyFixtures:
    root: Path
    bundle_dir: Path
    sqlite_path: Path
    pairs: tuple[tuple[str, int], ...]
    labels: tuple[str, ...] = LABELS


# What the cached files depend on besides this file: the bundle and vocabulary formats. A listed
# file that does not exist (moved by a refactoring) is skipped; the moved code is then not hashed.
_HASHED_APP_FILES = (
    "bundle.py",
    "importers/keras_model.py",
    "vocab/sqlite.py",
    "vocab/checksum.py",
    "vocab/meta.py",
)


def _source_hash(labels: tuple[str, ...] = LABELS) -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for name in _HASHED_APP_FILES:
        path = APP_SRC / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    if labels != LABELS:  # the six-label bundle keeps the directory name it always had
        digest.update(repr(labels).encode())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("TOXIC_TEST_FIXTURE_CACHE") or REPO / ".cache" / "test-fixtures")


def write_fixture_bundle(target: Path, labels: tuple[str, ...] = LABELS) -> None:
    """Write the tiny bundle (target/model) and its vocabulary (target/vocab.sqlite), uncached."""
    from toxic_service.bundle import BundleMetadata, TokenizerConfig, write_bundle
    from toxic_service.importers.keras_model import keras_to_tflite
    from toxic_service.vocab.sqlite import write_sqlite

    labels = tuple(labels)
    pairs = tiny_vocab_pairs()
    info = write_sqlite(Path(target) / "vocab.sqlite", pairs, source=SOURCE, index_base=1)
    model = build_keras_model(labels)
    meta = BundleMetadata(
        labels=labels,
        max_len=MAX_LEN,
        vocabulary_checksum=info.checksum,
        vocabulary_size=info.size,
        index_base=1,
        pad_index=0,
        oov_index=None,
        num_words=None,
        tokenizer=TokenizerConfig(),
        trained_labels=labels,
        vocabulary_source=SOURCE,
        model_source=SOURCE,
        model_licence="MIT",
    )
    with warnings.catch_warnings():
        # Keras 3.15's model.save calls np.array() on a tensor in a way NumPy 2.4 deprecates: not ours to fix,
        # and it would show under whichever test first builds the fixtures.
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        write_bundle(Path(target) / "model", tflite_bytes=keras_to_tflite(model), keras_model=model, metadata=meta)


def _build(target: Path) -> None:
    write_fixture_bundle(target)


def build_tiny_fixtures(labels: tuple[str, ...] = LABELS) -> TinyFixtures:
    """Build once per machine (per source hash and label set); later calls return the cached files."""
    labels = tuple(labels)
    if not labels or len(set(labels)) != len(labels):
        raise ValueError(f"build_tiny_fixtures: labels must be distinct and at least one, got {labels!r}")
    root = cache_root()
    final = root / _source_hash(labels)
    if not (final / "model" / "metadata.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
        try:
            write_fixture_bundle(staging, labels)
            staging.chmod(0o755)  # mkdtemp makes it 0700; service users in other tests must read it
            try:
                os.rename(staging, final)  # atomic; a concurrent builder may have won
            except OSError:
                if not (final / "model" / "metadata.json").is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return TinyFixtures(
        root=final,
        bundle_dir=final / "model",
        sqlite_path=final / "vocab.sqlite",
        pairs=tuple(tiny_vocab_pairs()),
        labels=labels,
    )


if __name__ == "__main__":
    print(build_tiny_fixtures())
