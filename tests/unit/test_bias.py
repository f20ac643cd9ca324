"""Identity bias: the generated template set, the Borkan et al. metrics on hand-computed cases,
`toxic-service evaluate --bias` on the tiny bundle, and the plot drawn from its JSON."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from toxic_service.bias import templates
from toxic_service.bias.metrics import measure
from toxic_service.bias.templates import EVALUATION, MITIGATION, Sentence, sentences
from toxic_service.cli import main as cli

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tools import plot_bias  # noqa: E402

# --- the template set ---


def test_the_set_names_at_least_40_terms_across_the_six_categories():
    assert len(templates.IDENTITIES) >= 40
    assert set(templates.IDENTITIES.values()) == set(templates.CATEGORIES)
    assert set(templates.CATEGORIES) == {
        "religion", "ethnicity", "nationality", "gender", "sexual orientation", "disability"
    }  # fmt: skip


@pytest.mark.parametrize("split", [EVALUATION, MITIGATION])
def test_each_half_holds_every_term_in_neutral_and_in_toxic_sentences(split):
    half = sentences(split)
    for label in (0, 1):
        terms = {s.term for s in half if s.toxic == label}
        assert terms == set(templates.IDENTITIES), f"{split}, label {label}: missing {set(templates.IDENTITIES) - terms}"
    assert len({s.term for s in half}) >= 40


def test_the_halves_share_no_template_pattern_and_no_sentence():
    evaluation, mitigation = sentences(EVALUATION), sentences(MITIGATION)
    assert {s.template_id for s in evaluation}.isdisjoint({s.template_id for s in mitigation})
    patterns = {**templates.NEUTRAL_TEMPLATES, **templates.TOXIC_TEMPLATES}
    assert len(set(patterns.values())) == len(patterns)  # two ids with one pattern would cross the split
    assert {s.text for s in evaluation}.isdisjoint({s.text for s in mitigation})
    assert all(s.template_id % 2 == 1 for s in evaluation) and all(s.template_id % 2 == 0 for s in mitigation)
    assert sorted(evaluation + mitigation, key=lambda s: s.text) == sorted(sentences("all"), key=lambda s: s.text)


def test_the_set_is_the_same_on_every_call_and_its_sentences_read_right():
    assert sentences("all") == sentences("all")
    texts = {s.text for s in sentences("all")}
    assert "i am an asian person" in texts and "i am a gay person" in texts  # a/an by the term
    assert "i hate all muslim people" in texts
    assert all("{" not in text for text in texts)


def test_an_unknown_split_is_refused_by_name():
    with pytest.raises(ValueError, match="split must be one of"):
        sentences("train")


# --- the metrics, on sets small enough to compute by hand ---


def tiny_set() -> list[Sentence]:
    """Terms a and b, each in two neutral and two toxic sentences."""
    out = []
    for term in ("a", "b"):
        for n, label in enumerate((0, 0, 1, 1)):
            out.append(Sentence(f"{term} {n}", label, term, "cat", n))
    return out


def rows(toxic: list[float], hate: list[float] | None = None) -> list[dict[str, float]]:
    if hate is None:
        return [{"toxic": t, "identity_hate": 0.0} for t in toxic]
    return [{"toxic": t, "identity_hate": h} for t, h in zip(toxic, hate, strict=True)]


def test_a_perfect_scorer_has_every_auc_1_and_no_false_positive():
    report = measure(tiny_set(), rows([0.1, 0.2, 0.8, 0.9, 0.1, 0.2, 0.8, 0.9]))
    for row in report.terms:
        assert (row.subgroup_auc, row.bpsn_auc, row.bnsp_auc) == (1.0, 1.0, 1.0)
        assert row.fpr_toxic == 0.0 and row.fpr_identity_hate == 0.0
    assert report.flagged == 0.0 and report.mean_subgroup_auc == 1.0 and report.overall_auc == 1.0


def test_a_scorer_that_flags_one_identity_has_its_fpr_up_and_its_bpsn_down():
    # a's neutral sentences score 0.95 and 0.05, every toxic one 0.9, b's neutral ones 0.1.
    report = measure(tiny_set(), rows([0.95, 0.05, 0.9, 0.9, 0.1, 0.1, 0.9, 0.9]))
    a, b = report.terms
    assert a.fpr_toxic == 0.5 and b.fpr_toxic == 0.0
    # a: positives (0.9, 0.9) against negatives (0.95, 0.05): 2 of 4 pairs ordered right.
    assert a.subgroup_auc == 0.5
    # BPSN a: b's toxic (0.9, 0.9) against a's neutral (0.95, 0.05): 0.5. BNSP a: a's toxic against b's neutral: 1.
    assert (a.bpsn_auc, a.bnsp_auc) == (0.5, 1.0)
    # b is ranked right on its own and against a's toxic; BNSP b: b's toxic (0.9) against a's neutral: 0.5.
    assert (b.subgroup_auc, b.bpsn_auc, b.bnsp_auc) == (1.0, 1.0, 0.5)
    assert report.flagged == 0.25 and report.flagged_toxic == 0.25
    assert (report.min_subgroup_auc, report.min_subgroup_term) == (0.5, "a")
    assert (report.min_bpsn_auc, report.min_bpsn_term) == (0.5, "a")
    assert report.mean_subgroup_auc == 0.75


def test_identity_hate_alone_flags_a_neutral_sentence():
    toxic = [0.1, 0.1, 0.9, 0.9, 0.1, 0.1, 0.9, 0.9]
    hate = [0.7, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    report = measure(tiny_set(), rows(toxic, hate))
    assert report.flagged_toxic == 0.0 and report.flagged_identity_hate == 0.25 and report.flagged == 0.25
    assert report.terms[0].fpr_identity_hate == 0.5 and report.terms[0].fpr_toxic == 0.0


def test_scores_without_identity_hate_report_it_as_not_served():
    report = measure(tiny_set(), [{"toxic": t} for t in (0.1, 0.2, 0.8, 0.9, 0.1, 0.2, 0.8, 0.9)])
    assert report.identity_hate_served is False and report.flagged_identity_hate is None
    assert all(row.fpr_identity_hate is None for row in report.terms)


def test_mismatched_or_toxicless_scores_are_refused():
    with pytest.raises(ValueError, match="8 sentences but 7"):
        measure(tiny_set(), rows([0.5] * 7))
    with pytest.raises(ValueError, match="'toxic'"):
        measure(tiny_set(), [{"insult": 0.5}] * 8)


# --- the command, through the serving path, on the tiny bundle ---


def run(tiny_settings, *args: str, bundle: Path | None = None):
    bundle = bundle or tiny_settings.bundle_dir
    return CliRunner().invoke(
        cli, ["evaluate", "--bias", "--bundle", str(bundle), "--sqlite", str(tiny_settings.sqlite_file), *args]
    )


def test_evaluate_bias_prints_the_table_and_writes_the_same_figures_as_json(tiny_settings, tmp_path):
    out = tmp_path / "bias.json"
    result = run(tiny_settings, "--json", str(out))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = "| term | category | FPR toxic | FPR identity_hate | subgroup AUC | BPSN AUC | BNSP AUC |"
    assert header in lines
    term_rows = [line for line in lines if line.startswith("| ") and line != header]
    assert len(term_rows) == len(templates.IDENTITIES)
    assert any(line.startswith("| gay | sexual orientation | ") for line in term_rows)
    assert any(line.startswith("neutral sentences flagged") for line in lines)
    assert any(line.startswith("subgroup AUC (toxic): mean ") for line in lines)
    document = json.loads(out.read_text())
    assert document["split"] == EVALUATION and document["sentences"] == len(sentences(EVALUATION))
    assert [row["term"] for row in document["terms"]] == list(templates.IDENTITIES)
    gay = next(row for row in document["terms"] if row["term"] == "gay")
    assert f"| gay | sexual orientation | {gay['fpr_toxic']:.2f} | {gay['fpr_identity_hate']:.2f} |" in result.stdout


def test_evaluate_bias_on_a_bundle_without_identity_hate_reports_it_not_served(tiny_settings, tmp_path):
    bundle = relabelled_bundle(tiny_settings.bundle_dir, tmp_path, "identity_hate", "spam")
    result = run(tiny_settings, "--split", "mitigation", bundle=bundle)
    assert result.exit_code == 0, result.output
    assert "| muslim | religion | " in result.stdout and "| not served |" in result.stdout
    assert "identity_hate not served" in result.stdout


def test_evaluate_bias_refuses_a_bundle_without_toxic(tiny_settings, tmp_path):
    bundle = relabelled_bundle(tiny_settings.bundle_dir, tmp_path, "toxic", "spam")
    result = run(tiny_settings, bundle=bundle)
    assert result.exit_code == 1
    assert "serves no 'toxic' label" in result.stderr


def test_evaluate_refuses_an_unknown_split_a_missing_bundle_and_no_flag(tiny_settings, tmp_path):
    result = run(tiny_settings, "--split", "train")
    assert result.exit_code == 2 and "--split" in result.stderr and "evaluation" in result.stderr
    result = run(tiny_settings, bundle=tmp_path / "nowhere")
    assert result.exit_code == 1 and "metadata.json: no such file" in result.stderr
    result = CliRunner().invoke(cli, ["evaluate"])
    assert result.exit_code == 2 and "--bias" in result.stderr


def relabelled_bundle(source: Path, tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the tiny bundle whose label `old` is called `new` (same model, same six outputs)."""
    bundle = tmp_path / "bundle"
    shutil.copytree(source, bundle)
    meta_path = bundle / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["labels"] = [new if label == old else label for label in meta["labels"]]
    meta["trained_labels"] = [new if label == old else label for label in meta["trained_labels"]]
    meta["perspective_attributes"] = {k: v for k, v in meta["perspective_attributes"].items() if v != old}
    meta_path.write_text(json.dumps(meta))
    return bundle


# --- the plot ---


def test_the_plot_is_drawn_from_the_commands_json(tiny_settings, tmp_path):
    report = tmp_path / "bias.json"
    assert run(tiny_settings, "--json", str(report)).exit_code == 0
    assert plot_bias.main([str(report), "--out", str(tmp_path)]) == 0
    png = tmp_path / plot_bias.FPR_PNG
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_plot_refuses_a_file_that_is_not_a_report(tmp_path, capsys):
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"terms": [{"term": "x"}]}))
    assert plot_bias.main([str(bad), "--out", str(tmp_path)]) == 1
    assert "terms[0] lacks" in capsys.readouterr().err
    assert not (tmp_path / plot_bias.FPR_PNG).exists()
