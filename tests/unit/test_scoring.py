"""The Scorer end to end on the tiny real model: behaviour, one lookup and one model call per batch."""

from __future__ import annotations

import json
import shutil
import threading

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
    with pytest.raises(NotReady, match="sha256 differs"):
        scorer.check_ready()
    scorer.close()


def test_scores_match_the_keras_runtime(scorer, tiny_settings):
    pytest.importorskip("tensorflow", reason="TensorFlow (the keras extra) is not installed")
    keras_scorer = build_scorer(tiny_settings.replace(**{"runtime": "keras"}))
    texts = ["you idiot", "thank you for the helpful edit", "I will kill you, stupid", ""]
    a = np.array([list(r.values()) for r in scorer.score(texts)])
    b = np.array([list(r.values()) for r in keras_scorer.score(texts)])
    np.testing.assert_allclose(a, b, atol=1e-5)
