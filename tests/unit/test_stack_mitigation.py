"""The de-biased toxic and identity_hate labels of train-stack (--mitigate): held-out honesty, scope, serving.

Trains real (tiny) stacks on a synthetic CSV with the tiny real LiteRT bundle of tests/conftest.py as the base.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_stack import INSULTS, NEUTRAL, settings_for, small_config, synthetic_rows, write_csv
from toxic_service.bias import mitigation
from toxic_service.bias.metrics import measure
from toxic_service.bias.templates import EVALUATION, MITIGATION, sentences
from toxic_service.bundle import STACK_FILE, load_metadata
from toxic_service.importers import InputFileError
from toxic_service.scoring import build_scorer
from toxic_service.stack import StackModel, load_stack
from toxic_service.stack_training import train_stack

pytest.importorskip("sklearn", reason="train-stack needs the `train` extra (scikit-learn)")

MITIGATED = ("toxic", "identity_hate")
UNLABELLED = [f"{t} again {i}" for i, t in enumerate(INSULTS + NEUTRAL)]


@pytest.fixture(scope="module")
def built(tiny_bundle_dir, tiny_sqlite_path, tmp_path_factory):
    """(insult-only stack, stack with toxic and identity_hate mitigated, the latter's result), same CSV and seed."""
    root = tmp_path_factory.mktemp("mitigation")
    csv_path = write_csv(root / "train.csv", synthetic_rows())
    unlabelled = root / "unlabelled.json"
    unlabelled.write_text(json.dumps({"texts": UNLABELLED}))
    plain = root / "plain"
    train_stack(small_config(tiny_bundle_dir, tiny_sqlite_path, csv_path, plain), log=lambda _: None)
    mitigated = root / "mitigated"
    result = train_stack(
        small_config(
            tiny_bundle_dir, tiny_sqlite_path, csv_path, mitigated, mitigate=MITIGATED, distil=(unlabelled,),
            template_weights=(3.0, 30.0),
        ),
        log=lambda _: None,
    )
    return plain, mitigated, result


def test_template_rows_to_train_on_are_the_mitigation_half_and_never_an_evaluation_sentence():
    rows = mitigation.training_sentences()
    assert rows == sentences(MITIGATION)
    held_out = {mitigation.text_key(s.text) for s in sentences(EVALUATION)}
    assert not held_out & {mitigation.text_key(s.text) for s in rows}
    # The builder checks by text hash: an evaluation sentence, even re-spaced, is refused.
    leaked = sentences(EVALUATION)[7]
    respaced = type(leaked)(" " + leaked.text.replace(" ", "  ") + "\n", 0, leaked.term, leaked.category, 0)
    with pytest.raises(ValueError, match="evaluation-half sentences"):
        mitigation.refuse_evaluation([*rows, respaced])


def test_cv_folds_split_the_mitigation_half_by_template():
    rows = mitigation.training_sentences()
    for fold in range(mitigation.FOLDS):
        inside = [s for s in rows if mitigation.template_fold(s.template_id) == fold]
        assert {s.toxic for s in inside} == {0, 1}
        # a template is in one fold only: no held-out wording was seen in the fit
        outside = {s.template_id for s in rows if mitigation.template_fold(s.template_id) != fold}
        assert not {s.template_id for s in inside} & outside


def test_training_used_the_mitigation_half_only(built):
    _, _, result = built
    assert [m.label for m in result.mitigation] == list(MITIGATED)
    for m in result.mitigation:
        assert m.n_templates == len(sentences(MITIGATION))
        assert m.template_weight in (3.0, 30.0) and len(m.grid) == 2


def test_mitigated_bundle_changes_only_toxic_and_identity_hate(built, tiny_settings):
    plain, mitigated, _ = built
    meta = load_metadata(mitigated)
    assert meta.stack_labels == ("insult", *MITIGATED) and STACK_FILE in meta.model_files
    for label in MITIGATED:
        assert "distilled" in meta.label_sources[label] and "mitigation half" in meta.label_sources[label]
    assert meta.trained_labels == load_metadata(plain).trained_labels
    texts = [s.text for s in sentences(EVALUATION)[::7]] + UNLABELLED
    scorers = [build_scorer(tiny_settings), build_scorer(settings_for(plain, tiny_settings)),
               build_scorer(settings_for(mitigated, tiny_settings))]
    try:
        base, insult_only, after = (s.score(texts) for s in scorers)
    finally:
        for s in scorers:
            s.close()
    untouched = [lab for lab in meta.labels if lab not in meta.stack_labels]
    assert untouched == ["severe_toxic", "obscene", "threat"]
    for b, i, a in zip(base, insult_only, after, strict=True):
        assert {k: a[k] for k in untouched} == {k: b[k] for k in untouched}
        # The insult row is the insult-only stack's recipe (liblinear's own shuffling: not bit for bit).
        assert a["insult"] == pytest.approx(i["insult"], rel=1e-3, abs=1e-6)
    assert any(a["toxic"] != b["toxic"] for a, b in zip(after, base, strict=True))


def test_end_to_end_through_build_scorer(built, tiny_settings):
    """Served scores are the stack file's arithmetic, the evaluation half is not flagged, real text stays close."""
    _, mitigated, _ = built
    meta = load_metadata(mitigated)
    stack = load_stack(mitigated / STACK_FILE, len(meta.labels), len(meta.stack_labels))
    assert isinstance(stack, StackModel) and stack.n_stacked == 3
    held_out = sentences(EVALUATION)
    base = build_scorer(tiny_settings)
    served = build_scorer(settings_for(mitigated, tiny_settings))
    try:
        before = base.score([s.text for s in held_out])
        after = served.score([s.text for s in held_out])
        real_before, real_after = base.score(UNLABELLED), served.score(UNLABELLED)
    finally:
        base.close()
        served.close()
    model = np.array([[row[lab] for lab in meta.labels] for row in before], dtype=np.float32)
    expected = stack.score([s.text for s in held_out], model)
    got = np.array([[row[lab] for lab in meta.stack_labels] for row in after])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # The tiny model knows few of the templates' words: the figures are checked against its own, not the issue's.
    report, base_report = measure(held_out, after), measure(held_out, before)
    assert report.flagged <= max(base_report.flagged, 0.05)
    assert report.mean_subgroup_auc > base_report.mean_subgroup_auc
    gap = [abs(a["toxic"] - b["toxic"]) for a, b in zip(real_after, real_before, strict=True)]
    assert np.mean(gap) < 0.1


def test_a_one_label_stack_file_of_the_earlier_format_still_loads(built, tmp_path):
    plain, _, _ = built
    with np.load(plain / STACK_FILE) as npz:
        arrays = {name: npz[name] for name in npz.files}
    old = {name: (a[0] if a.ndim == 2 else a[0] if name.endswith("intercept") else a) for name, a in arrays.items()}
    assert old["idf"].ndim == 1 and old["intercept"].ndim == 0
    path = tmp_path / STACK_FILE
    with path.open("wb") as fh:
        np.savez_compressed(fh, **old)
    n_labels = len(load_metadata(plain).labels)
    texts = UNLABELLED[:3]
    scores = np.full((3, n_labels), 0.3, dtype=np.float32)
    np.testing.assert_array_equal(
        load_stack(path, n_labels).score(texts, scores), load_stack(plain / STACK_FILE, n_labels).score(texts, scores)
    )


@pytest.mark.parametrize(
    ("mitigate", "message"),
    [(("spam",), "has no label 'spam'"), (("insult",), "distinct labels other than --label insult"),
     (("toxic", "toxic"), "distinct labels")],
)
def test_bad_mitigate_labels_are_refused_and_nothing_is_written(mitigate, message, tiny_bundle_dir, tiny_sqlite_path, tmp_path):
    csv_path = write_csv(tmp_path / "t.csv", synthetic_rows(20))
    out = tmp_path / "out"
    with pytest.raises(InputFileError, match=message):
        train_stack(small_config(tiny_bundle_dir, tiny_sqlite_path, csv_path, out, mitigate=mitigate), log=lambda _: None)
    assert not out.exists()


def test_sparse_rows_shortcut_gives_the_dense_arithmetic():
    """Serving picks a mitigation row's few n-grams out before its arithmetic: the same decisions as without."""
    from toxic_service import ngrams

    width = 1 << 16
    texts = UNLABELLED + ["", "a", "naïve café 😀"]
    rng = np.random.default_rng(3)
    dense = ngrams.fit_idf(ngrams.count(texts, width), width, 1)
    sparse = dense * (rng.random(width) < 0.05)  # a row knowing a few ids only
    idf = np.vstack([dense, sparse, sparse]).astype(np.float32)
    coef = rng.normal(size=(3, width)).astype(np.float32)
    known = (idf != 0).any(axis=0)
    full = ngrams.decisions(texts, idf, coef, np.array([0.1, 0.2, 0.3]), known)
    fast = ngrams.decisions(texts, idf, coef, np.array([0.1, 0.2, 0.3]), known, (1, 2), (idf[1:] != 0).any(axis=0))
    np.testing.assert_allclose(fast, full, rtol=1e-12, atol=1e-12)
    model = StackModel(idf, coef, np.zeros(3), np.zeros((3, 7)), np.ones((3, 7)), np.ones((3, 7)), np.zeros(3))
    assert model._sparse[0] == (1, 2)  # the load finds the rows the shortcut is for
    for j in range(3):
        single = ngrams.decision(texts, idf[j], coef[j], [0.1, 0.2, 0.3][j], idf[j] != 0)
        np.testing.assert_allclose(full[:, j], single, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        ({"label": "insult", "file": STACK_FILE}, ("insult",)),  # the one-label form bundles were written with
        ({"labels": ["insult", "toxic"], "file": STACK_FILE}, ("insult", "toxic")),
        ({"labels": ["insult", "insult"], "file": STACK_FILE}, None),
        ({"labels": ["spam"], "file": STACK_FILE}, None),
        ({"labels": [], "file": STACK_FILE}, None),
        ({"labels": ["insult"], "file": "other.npz"}, None),
    ],
)
def test_metadata_stack_labels_are_read_and_checked(stack, expected, built, tmp_path):
    import shutil

    from toxic_service.errors import BundleError

    plain, _, _ = built
    bundle = tmp_path / "model"
    shutil.copytree(plain, bundle)
    doc = json.loads((bundle / "metadata.json").read_text())
    doc["stack"] = stack
    (bundle / "metadata.json").write_text(json.dumps(doc))
    if expected is None:
        with pytest.raises(BundleError, match="'stack' must be"):
            load_metadata(bundle)
    else:
        assert load_metadata(bundle).stack_labels == expected


def test_the_command_takes_mitigate_and_distil(tiny_bundle_dir, tiny_sqlite_path, tmp_path):
    from click.testing import CliRunner
    from toxic_service.cli import main

    csv_path = write_csv(tmp_path / "train.csv", synthetic_rows())
    unlabelled = tmp_path / "unlabelled.json"
    unlabelled.write_text(json.dumps({"texts": UNLABELLED}))
    out = tmp_path / "model"
    result = CliRunner().invoke(
        main,
        ["train-stack", "--stack-on", str(tiny_bundle_dir), "--vocab", str(tiny_sqlite_path), "--data", str(csv_path),
         "--distil", str(unlabelled), "--mitigate", "toxic", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "toxic: template weight" in result.output
    assert load_metadata(out).stack_labels == ("insult", "toxic")
    report = json.loads((out / "train_report.json").read_text())
    assert report["mitigation"][0]["label"] == "toxic" and report["mitigation"][0]["n_templates"] == 576


def test_a_batch_where_no_row_knows_any_n_gram_scores_its_intercepts():
    """"0" through nginx was a 500: no known n-gram left bincount's int zeros, and divide refused to cast into them."""
    from toxic_service import ngrams

    width = 1 << 16
    idf = np.zeros((2, width), dtype=np.float32)
    idf[:, ngrams.count(["zzz"], width).ids] = 1.0  # every row knows only the n-grams of "zzz"
    coef = np.ones((2, width), dtype=np.float32)
    known = (idf != 0).any(axis=0)
    for sparse_rows in ((), (1,)):
        got = ngrams.decisions(["0", ""], idf, coef, np.array([0.25, -0.5]), known, sparse_rows, known if sparse_rows else None)
        np.testing.assert_array_equal(got, [[0.25, -0.5], [0.25, -0.5]])


def test_only_the_first_max_bytes_of_a_comment_are_counted():
    """A long comment costs what its first MAX_BYTES bytes cost, at training and at serving (the same count())."""
    from toxic_service import ngrams

    head = ("abc def " * ngrams.MAX_BYTES)[: ngrams.MAX_BYTES]
    counts = ngrams.count([head, head + "zzzz qqqq " * 500], 1 << 16)
    first, second = (slice(counts.indptr[i], counts.indptr[i + 1]) for i in range(2))
    assert counts.indptr[1] > 0
    np.testing.assert_array_equal(counts.ids[first], counts.ids[second])
    np.testing.assert_array_equal(counts.tf[first], counts.tf[second])
