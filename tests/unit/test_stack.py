"""The stacked insult label: featuriser determinism, bundle integrity, serving through build_scorer, bad input.

Trains real (tiny) stacks on a synthetic CSV with the tiny real LiteRT bundle of tests/conftest.py as the base.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from toxic_service import ngrams
from toxic_service.auc import roc_auc
from toxic_service.bundle import STACK_FILE, load_metadata
from toxic_service.cli import main
from toxic_service.errors import BundleError
from toxic_service.importers import InputFileError
from toxic_service.scoring import build_scorer
from toxic_service.settings import Settings
from toxic_service.stack_training import StackConfig, train_stack

pytest.importorskip("sklearn", reason="train-stack needs the `train` extra (scikit-learn)")

TEXTS = [
    "You are an idiot, a total moron!",
    "Thanks for the edit, the references look good.",
    "naïve café — déjà vu 😀",
    "",
    "a",
]
INSULTS = ["you are a stupid idiot", "what a moron you are", "shut up you dumb fool", "you pathetic loser"]
NEUTRAL = ["thanks for the helpful edit", "the meeting is at noon", "i like this article", "good point about the data"]


def write_csv(path, rows, columns=("id", "comment_text", "insult")):
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def synthetic_rows(n=80):
    rows = []
    for i in range(n):
        insult = i % 2 == 0
        pool = INSULTS if insult else NEUTRAL
        rows.append((f"r{i}", f"{pool[i % len(pool)]} number {i}", int(insult)))
    return rows


SMALL_GRID = {"widths": (1 << 12,), "min_dfs": (1,), "ngram_cs": (1.0, 10.0), "stack_cs": (1.0,)}


def small_config(tiny_bundle_dir, tiny_sqlite_path, csv_path, out_dir, **kw):
    return StackConfig(
        base_bundle=tiny_bundle_dir, vocab_path=tiny_sqlite_path, csv_path=csv_path, out_dir=out_dir, **{**SMALL_GRID, **kw}
    )


def settings_for(bundle, tiny_settings):
    return Settings(
        data_dir=tiny_settings.data_dir, bundle=bundle, sqlite_path=tiny_settings.sqlite_path, vocab_backend="sqlite",
        runtime="litert", cache_entries=1000,
    )


@pytest.fixture(scope="module")
def stacked(tiny_bundle_dir, tiny_sqlite_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("stack")
    csv_path = write_csv(root / "train.csv", synthetic_rows())
    out = root / "model"
    result = CliRunner().invoke(
        main,
        ["train-stack", "--stack-on", str(tiny_bundle_dir), "--vocab", str(tiny_sqlite_path), "--data", str(csv_path),
         "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    return out


def test_fnv1a_ids_are_the_documented_hash():
    # FNV-1a 32-bit of b"a" is 0xe40c292c (a published test vector), of b"b" 0xe70c2de5, of b"ab" 0x4d2505ca.
    mask = (1 << 30) - 1
    assert set(ngrams.count(["ab"], 1 << 30).ids.tolist()) == {0xE40C292C & mask, 0xE70C2DE5 & mask, 0x4D2505CA & mask}


def test_featuriser_ids_are_the_same_in_another_process():
    script = (
        "import json, sys; from toxic_service import ngrams; "
        "c = ngrams.count(json.loads(sys.stdin.read()), 1 << 20); print(json.dumps([c.ids.tolist(), c.tf.tolist()]))"
    )
    here = ngrams.count(TEXTS, 1 << 20)
    for seed in ("1", "2"):  # a salted hash() would differ between these
        proc = subprocess.run(
            [sys.executable, "-c", script], input=json.dumps(TEXTS), capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert json.loads(proc.stdout) == [here.ids.tolist(), here.tf.tolist()]


def test_a_comment_alone_has_the_features_it_has_in_a_batch():
    """Training featurises the whole CSV at once, serving a request's comments: the rows must not depend on it."""
    idf = ngrams.fit_idf(ngrams.count(TEXTS * 3, 1 << 16), 1 << 16, 2)
    batch = ngrams.featurise(TEXTS, idf)
    for i, text in enumerate(TEXTS):
        alone = ngrams.featurise([text], idf)
        lo, hi = batch.indptr[i], batch.indptr[i + 1]
        np.testing.assert_array_equal(alone.ids, batch.ids[lo:hi])
        np.testing.assert_allclose(alone.values, batch.values[lo:hi])


def test_int32_and_int64_counting_keys_agree():
    """A batch over 2**31 / width comments counts with int64 keys, a smaller one with int32: the same rows."""
    width = 1 << 20
    small = ngrams.count(TEXTS, width)
    large = ngrams.count(TEXTS * 410, width)  # 2,050 comments: 2,050 * 2**20 > 2**31
    n = small.indptr[-1]
    np.testing.assert_array_equal(large.indptr[: len(TEXTS) + 1], small.indptr)
    np.testing.assert_array_equal(large.ids[:n], small.ids)
    np.testing.assert_array_equal(large.tf[:n], small.tf)
    np.testing.assert_array_equal(large.ids[-n:], small.ids)


def test_serving_drops_unknown_ngrams_early_with_the_same_features():
    """featurise (serving) skips idf-0 n-grams before counting; the rows must equal transform(count) (training)."""
    width = 1 << 16
    idf = ngrams.fit_idf(ngrams.count(TEXTS[:2] * 2, width), width, 2)
    served = ngrams.featurise(TEXTS, idf)
    trained = ngrams.transform(ngrams.count(TEXTS, width), idf)
    np.testing.assert_array_equal(served.indptr, trained.indptr)
    np.testing.assert_array_equal(served.ids, trained.ids)
    np.testing.assert_allclose(served.values, trained.values)


def test_serving_decision_equals_the_lr_on_training_features():
    """Serving's fused ngrams.decision against coef . x + b on the features training builds (transform of count)."""
    width = 1 << 16
    idf = ngrams.fit_idf(ngrams.count(TEXTS[:3] * 2, width), width, 2)
    coef = np.random.default_rng(0).normal(size=width).astype(np.float32)
    trained = ngrams.linear(ngrams.transform(ngrams.count(TEXTS, width), idf), coef, 0.25)
    np.testing.assert_allclose(ngrams.decision(TEXTS, idf, coef, 0.25, idf != 0), trained, rtol=1e-12, atol=1e-12)


def test_tfidf_matches_the_definition():
    """sublinear tf x smooth idf, min_df dropping, unit L2 rows: computed here by hand for one small case."""
    width = 1 << 20
    docs = ["aa", "ab"]
    counts = ngrams.count(docs, width)
    idf = ngrams.fit_idf(counts, width, 1)
    a, b, aa, ab = (ngrams.count([t], width).ids[0] for t in ("a", "b", "aa", "ab"))
    # "a" is in both comments (df 2), the others in one: idf = ln(3/3)+1 = 1 and ln(3/2)+1.
    assert idf[a] == pytest.approx(1.0) and idf[b] == pytest.approx(np.log(1.5) + 1)
    feats = ngrams.transform(counts, idf)
    row0 = dict(zip(feats.ids[: feats.indptr[1]].tolist(), feats.values[: feats.indptr[1]], strict=True))
    raw = {a: (1 + np.log(2)) * 1.0, aa: np.log(1.5) + 1}
    norm = np.sqrt(sum(v * v for v in raw.values()))
    assert row0 == pytest.approx({k: v / norm for k, v in raw.items()})
    assert ab not in row0
    dropped = ngrams.fit_idf(counts, width, 2)
    assert dropped[b] == 0 and dropped[a] > 0


def test_stacked_bundle_changes_only_insult_and_learns_it(stacked, tiny_settings):
    meta = load_metadata(stacked)
    assert meta.stack_labels == ("insult",) and STACK_FILE in meta.model_files
    assert "char 1-5-gram LR" in meta.label_sources["insult"] and set(meta.label_sources) == set(meta.labels)
    texts = [f"{t} number {i}" for i, t in enumerate(INSULTS + NEUTRAL)]
    base = build_scorer(tiny_settings)
    stack = build_scorer(settings_for(stacked, tiny_settings))
    try:
        before, after = base.score(texts), stack.score(texts)
    finally:
        base.close()
        stack.close()
    for b, a in zip(before, after, strict=True):
        assert {k: v for k, v in a.items() if k != "insult"} == {k: v for k, v in b.items() if k != "insult"}
    assert [a["insult"] for a in after] != [b["insult"] for b in before]
    y = [1] * len(INSULTS) + [0] * len(NEUTRAL)
    assert roc_auc(y, [a["insult"] for a in after]) == 1.0


@pytest.mark.parametrize("damage", ["tamper", "remove"])
def test_bundle_refuses_a_changed_or_missing_stack_file(stacked, tiny_settings, tmp_path, damage):
    bundle = tmp_path / "model"
    shutil.copytree(stacked, bundle)
    if damage == "tamper":  # a valid file with other weights: only its sha256 tells
        with np.load(bundle / STACK_FILE) as npz:
            arrays = {name: npz[name] for name in npz.files}
        arrays["intercept"] = arrays["intercept"] + 5.0
        with (bundle / STACK_FILE).open("wb") as fh:
            np.savez_compressed(fh, **arrays)
    else:
        (bundle / STACK_FILE).unlink()
    with pytest.raises(BundleError, match=STACK_FILE):
        build_scorer(settings_for(bundle, tiny_settings))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no-text", "no 'comment_text' column"),
        ("no-label", "no 'insult' column"),
        ("not-binary", "insult is '2', expected 0 or 1"),
        ("empty", "0 rows"),
        ("overlap", "also in the evaluation file"),
    ],
)
def test_bad_input_is_refused_naming_the_problem_and_writes_nothing(
    case, message, tiny_bundle_dir, tiny_sqlite_path, tmp_path
):
    rows = synthetic_rows(20)
    exclude = ()
    if case == "no-text":
        csv_path = write_csv(tmp_path / "t.csv", rows, ("id", "text", "insult"))
    elif case == "no-label":
        csv_path = write_csv(tmp_path / "t.csv", rows, ("id", "comment_text", "toxic"))
    elif case == "not-binary":
        csv_path = write_csv(tmp_path / "t.csv", [*rows, ("x", "hello", 2)])
    elif case == "empty":
        csv_path = write_csv(tmp_path / "t.csv", [])
    else:
        csv_path = write_csv(tmp_path / "t.csv", rows)
        test = tmp_path / "test.json"
        test.write_text(json.dumps({"texts": ["unrelated", "  " + rows[3][1].replace(" ", "\n  ") + " "]}))
        exclude = (test,)
    out = tmp_path / "out"
    with pytest.raises(InputFileError, match=message):
        train_stack(small_config(tiny_bundle_dir, tiny_sqlite_path, csv_path, out, exclude=exclude), log=lambda _: None)
    assert not out.exists()
