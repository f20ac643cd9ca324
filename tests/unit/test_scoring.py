"""The Scorer end to end on the tiny real model: behaviour, one lookup and one model call per batch,
and the served scores equal to the Keras model's own on indexes built here, not by our tokenizer."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading

import fixtures_builder
import numpy as np
import pytest
from toxic_service.bundle import load_metadata
from toxic_service.errors import BundleError, NotReady, StoreUnavailable, VocabularyMismatch
from toxic_service.runtime.factory import create_runtime
from toxic_service.scoring import Scorer, build_scorer
from toxic_service.vocab.cache import CachedVocabularyStore
from toxic_service.vocab.mongo import MongoVocabularyStore
from toxic_service.vocab.sqlite import SqliteVocabularyStore, write_sqlite


@pytest.fixture(scope="module")
def scorer(tiny_settings):
    s = build_scorer(tiny_settings)
    yield s
    s.close()


class CountingRuntime:
    """Delegates to a real runtime and counts the calls (the model still runs)."""

    def __init__(self, real) -> None:
        self.real, self.calls = real, 0

    def predict(self, batch):
        self.calls += 1
        return self.real.predict(batch)

    def close(self) -> None:
        self.real.close()


def test_known_behaviour_of_the_tiny_model(scorer, tiny_bundle_dir):
    insult, polite, threat = scorer.score(["you idiot", "thank you", "I will kill you"])
    assert list(insult) == list(scorer.labels) == list(load_metadata(tiny_bundle_dir).labels)
    assert insult["insult"] > 0.5 > polite["insult"]
    assert insult["toxic"] > 0.5 > polite["toxic"]
    assert threat["threat"] > 0.5 > insult["threat"]
    assert all(isinstance(v, float) and 0 < v < 1 for row in (insult, polite, threat) for v in row.values())


def test_case_and_punctuation_do_not_change_scores(scorer):
    a, b = scorer.score(["you idiot", "YOU, IDIOT!!!\n"])
    assert a == b


def test_unknown_words_are_dropped_like_keras_without_oov(scorer):
    a, b, c = scorer.score(["you idiot", "you zxqv idiot blorf", ""])
    assert a == b
    assert c != a


def test_a_text_scores_the_same_alone_and_in_a_batch(scorer):
    texts = ["you idiot", "thank you", "the article is good", "die", "café naïve"] * 3
    batch = scorer.score(texts)
    for i in (0, 3, 14):
        alone = scorer.score([texts[i]])[0]
        assert alone == pytest.approx(batch[i], abs=1e-6)


def test_one_store_query_and_one_model_call_per_batch(tiny_settings, tiny_bundle_dir):
    meta = load_metadata(tiny_bundle_dir)
    store = SqliteVocabularyStore(tiny_settings.sqlite_file)
    runtimes: list[CountingRuntime] = []

    def factory():
        runtimes.append(CountingRuntime(create_runtime(tiny_settings, tiny_bundle_dir, meta)))
        return runtimes[-1]

    scorer = Scorer(meta, CachedVocabularyStore(store, 1000), factory)
    statements: list[str] = []
    store._conn().set_trace_callback(lambda sql: statements.append(sql) if sql.startswith("SELECT") else None)
    texts = [f"you idiot number{i}, thank you for the edit" for i in range(40)]
    assert len(scorer.score(texts)) == 40
    assert len(statements) == 1 and runtimes[0].calls == 1
    scorer.score(texts)  # every word now cached: no query at all
    assert len(statements) == 1 and runtimes[0].calls == 2
    assert scorer.score([]) == [] and runtimes[0].calls == 2
    scorer.close()


def test_one_runtime_per_thread(tiny_settings, tiny_bundle_dir):
    meta = load_metadata(tiny_bundle_dir)
    made: list[object] = []
    lock = threading.Lock()

    def factory():
        runtime = create_runtime(tiny_settings, tiny_bundle_dir, meta)
        with lock:
            made.append(runtime)
        return runtime

    scorer = Scorer(meta, SqliteVocabularyStore(tiny_settings.sqlite_file), factory)
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for _ in range(20):
                results[n] = scorer.score(["you idiot", "thank you"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(made) == 4
    assert all(r == results[0] for r in results.values())
    scorer.close()


def test_vocabulary_mismatch_is_refused(tiny_settings, tiny_vocab_pairs, tmp_path):
    other = tmp_path / "other.sqlite"
    write_sqlite(other, [(w, i) for w, i in tiny_vocab_pairs if w != "thank"], source="another vocabulary", index_base=1)
    with pytest.raises(VocabularyMismatch, match="do not belong together.*another vocabulary"):
        build_scorer(tiny_settings.replace(**{"sqlite_path": other}))


def test_index_base_mismatch_is_refused(tiny_settings, tiny_bundle_dir, tiny_vocab_pairs, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, bundle)
    doc = json.loads((bundle / "metadata.json").read_text())
    doc["index_base"] = 0
    (bundle / "metadata.json").write_text(json.dumps(doc))
    with pytest.raises(VocabularyMismatch, match="index_base 0"):
        build_scorer(tiny_settings.replace(**{"bundle": bundle}))


def test_missing_model_file_fails_at_build_not_at_first_request(tiny_settings, tiny_bundle_dir, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, bundle)
    (bundle / "model.keras").unlink()
    build_scorer(tiny_settings.replace(**{"bundle": bundle})).close()  # litert does not need it
    with pytest.raises(BundleError, match="model.keras: no such file"):
        build_scorer(tiny_settings.replace(**{"bundle": bundle, "runtime": "keras"}))


def test_missing_vocabulary_file_is_store_unavailable(tiny_settings, tmp_path):
    with pytest.raises(StoreUnavailable):
        build_scorer(tiny_settings.replace(**{"sqlite_path": tmp_path / "gone.sqlite"}))


def test_check_ready_reports_a_down_store(tiny_bundle_dir, tiny_settings):
    meta = load_metadata(tiny_bundle_dir)
    store = MongoVocabularyStore("mongodb://127.0.0.1:1/", "db", "vocab", timeout_ms=100)
    scorer = Scorer(meta, store, lambda: create_runtime(tiny_settings, tiny_bundle_dir, meta))
    with pytest.raises(StoreUnavailable):
        scorer.check_ready()
    with pytest.raises(StoreUnavailable):
        scorer.score(["you idiot"])


def test_check_ready_reports_a_model_that_cannot_load(tiny_settings, tiny_bundle_dir, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, bundle)
    scorer = build_scorer(tiny_settings.replace(**{"bundle": bundle}))
    (bundle / "model.tflite").write_bytes(b"replaced after start")
    # Whether the checksum (verified at start) or the load itself refuses it, /readyz must say so and name the file.
    with pytest.raises(NotReady, match=r"the model cannot be loaded: .*model\.tflite"):
        scorer.check_ready()
    scorer.close()


def test_scores_match_the_keras_runtime(scorer, tiny_settings):
    pytest.importorskip("tensorflow", reason="TensorFlow (the keras extra) is not installed")
    keras_scorer = build_scorer(tiny_settings.replace(**{"runtime": "keras"}))
    texts = ["you idiot", "thank you for the helpful edit", "I will kill you, stupid", ""]
    a = np.array([list(r.values()) for r in scorer.score(texts)])
    b = np.array([list(r.values()) for r in keras_scorer.score(texts)])
    np.testing.assert_allclose(a, b, atol=1e-5)


# Texts of lowercase words split by single spaces, so that the reference below can split them with
# str.split (what Keras' text_to_word_sequence gives for such text) instead of our tokenizer. Each
# guards something: word order, repeated words, the side padding goes, the end a long text keeps.
LONG_POLITE_END = "you stupid idiot i will kill you " + " ".join(["the article is good"] * 4) + " thank you for the edit"
REPEATS = "you are a stupid stupid idiot and i will kill you"
LONG_RUDE_END = "thank you for the helpful edit " + " ".join(["the article is good"] * 4) + " you stupid idiot"
REFERENCE_TEXTS = [
    "you idiot thank you",
    "thank you you idiot",
    "idiot idiot idiot you",
    REPEATS,
    "i will kill you",
    "die",
    "you zxqv idiot blorf",  # unknown words are dropped (the bundle has no oov index)
    "",
    " ".join(fixtures_builder.WORDS[: fixtures_builder.MAX_LEN]),  # exactly max_len words
    " ".join(fixtures_builder.WORDS[: fixtures_builder.MAX_LEN + 1]),  # one more: the first is cut
    LONG_POLITE_END,
    LONG_RUDE_END,
]


def reference_indexes(text: str, index: dict[str, int], max_len: int) -> list[int]:
    """Keras' texts_to_sequences + pad_sequences defaults, written out: known words in order,
    the last max_len of them, zeros in front."""
    assert text == text.lower().strip() and "  " not in text, text
    seq = [index[word] for word in text.split(" ") if word in index][-max_len:] if text else []
    return [0] * (max_len - len(seq)) + seq


@pytest.fixture(scope="module")
def keras_model():
    pytest.importorskip("tensorflow", reason="TensorFlow (the keras extra) is not installed")
    return fixtures_builder.build_keras_model()


def keras_scores(model, rows: list[list[int]]) -> np.ndarray:
    return np.asarray(model.predict(np.array(rows, dtype=np.int32), verbose=0), dtype=np.float64)


def test_the_fixture_word_table_is_the_vocabulary_file(tiny_sqlite_path, tiny_vocab_pairs):
    with sqlite3.connect(f"file:{tiny_sqlite_path}?mode=ro", uri=True) as conn:
        assert dict(conn.execute("SELECT word, idx FROM vocab")) == dict(tiny_vocab_pairs)


def test_the_fixture_model_sees_order_repeats_padding_side_and_truncation_end(keras_model, tiny_vocab_pairs):
    """Without this the end-to-end comparison below could not tell those scorer bugs apart."""
    index = dict(tiny_vocab_pairs)
    n = fixtures_builder.MAX_LEN

    def pre(seq):
        return [0] * (n - len(seq)) + seq

    def post(seq):
        return seq + [0] * (n - len(seq))

    words = [index[w] for w in REPEATS.split(" ")]
    deduped = list(dict.fromkeys(words))
    long = [index[w] for w in LONG_POLITE_END.split()]
    assert len(long) > n
    pairs = {
        "reversed": (pre(words), pre(words[::-1])),
        "repeats dropped": (pre(words), pre(deduped)),
        "post-padded": (pre(words), post(words)),
        "first max_len kept": (long[-n:], long[:n]),
    }
    for name, (right, wrong) in pairs.items():
        a, b = keras_scores(keras_model, [right, wrong])
        # 1000 times the tolerance of the end-to-end test: a scorer with that bug cannot pass it.
        assert np.abs(a - b).max() > 0.01, name


def test_scorer_end_to_end_equals_the_keras_model_on_independently_built_indexes(scorer, keras_model, tiny_vocab_pairs):
    """text -> tokenizer -> vocabulary -> padded indexes -> LiteRT, against Keras on indexes made here."""
    index = dict(tiny_vocab_pairs)
    expected = keras_scores(keras_model, [reference_indexes(t, index, scorer.metadata.max_len) for t in REFERENCE_TEXTS])
    served = scorer.score(REFERENCE_TEXTS)
    got = np.array([[row[label] for label in fixtures_builder.LABELS] for row in served])
    assert list(served[0]) == list(fixtures_builder.LABELS)
    for text, want, have in zip(REFERENCE_TEXTS, expected, got, strict=True):
        np.testing.assert_allclose(have, want, atol=1e-5, rtol=0, err_msg=f"text {text!r}")
    # The texts differ in what they guard: their scores must too, or one could hide another's bug.
    assert len({tuple(np.round(row, 4)) for row in got}) == len(REFERENCE_TEXTS)
