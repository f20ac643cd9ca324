"""`toxic-service evaluate --bias`: unintended identity bias of a bundle, scored as serving scores.

The identity templates (bias/templates.py) go through the service's own
Scorer (build_scorer: the same tokenizer, vocabulary store and runtime as
`serve`), and bias/metrics.py turns the scores into the per-term table. The
command is `evaluate` with a `--bias` flag so that plain metrics on a labelled
file can join it later under the same name.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from toxic_service.bias.metrics import IDENTITY_HATE, THRESHOLD, TOXIC, BiasReport
from toxic_service.bias.templates import EVALUATION, SPLITS

CHUNK = 64  # sentences per Scorer call: the runtime's largest bucket, and a progress step


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _worst(value: float | None, term: str | None) -> str:
    return "–" if value is None else f"{value:.3f} ({term})"


def table_lines(report: BiasReport) -> list[str]:
    """The per-term table as Markdown (readable in a terminal, pasted as is into docs/models.md)."""
    hate_header = f"FPR {IDENTITY_HATE}"
    lines = [
        f"| term | category | FPR {TOXIC} | {hate_header} | subgroup AUC | BPSN AUC | BNSP AUC |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report.terms:
        hate = _number(row.fpr_identity_hate, 2) if report.identity_hate_served else "not served"
        lines.append(
            f"| {row.term} | {row.category} | {_number(row.fpr_toxic, 2)} | {hate} | "
            f"{_number(row.subgroup_auc, 3)} | {_number(row.bpsn_auc, 3)} | {_number(row.bnsp_auc, 3)} |"
        )
    return lines


def summary_lines(report: BiasReport) -> list[str]:
    at = f">= {report.threshold:g}"
    flagged = round(report.flagged * report.neutral)
    if report.flagged_identity_hate is None:
        hate = f"{IDENTITY_HATE} not served"
    else:
        hate = f"by {IDENTITY_HATE} {report.flagged_identity_hate:.1%}"
    return [
        f"neutral sentences flagged ({TOXIC} or {IDENTITY_HATE} {at}): {report.flagged:.1%} "
        f"({flagged} of {report.neutral}); by {TOXIC} {report.flagged_toxic:.1%}, {hate}",
        f"subgroup AUC ({TOXIC}): mean {_number(report.mean_subgroup_auc, 3)}, "
        f"min {_worst(report.min_subgroup_auc, report.min_subgroup_term)}",
        f"BPSN AUC min {_worst(report.min_bpsn_auc, report.min_bpsn_term)}, "
        f"BNSP AUC min {_worst(report.min_bnsp_auc, report.min_bnsp_term)}; "
        f"overall AUC {report.overall_auc:.3f} ({report.sentences} sentences)",
    ]


@click.command("evaluate")
@click.option("--bias", is_flag=True, help="Measure unintended identity bias on the generated identity templates.")
@click.option("--split", type=click.Choice(SPLITS), default=EVALUATION, show_default=True,
              help="Template half to score: evaluation (odd template ids), mitigation (even ids), or all.")
@click.option("--json", "json_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the full report (every figure of the table and summary) as JSON to FILE.")
@click.option("--bundle", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Model bundle directory (default: TOXIC_BUNDLE or <data_dir>/model).")
@click.option("--sqlite", "sqlite_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="SQLite vocabulary file; implies the sqlite backend (default: TOXIC_SQLITE_PATH or <data_dir>/vocab.sqlite).")
def command(bias: bool, split: str, json_file: Path | None, bundle: Path | None, sqlite_path: Path | None) -> None:
    """Score a bundle through the serving path and report what it measures (today: --bias)."""
    from toxic_service.bias.metrics import measure
    from toxic_service.bias.templates import sentences
    from toxic_service.commands._progress import progress_bar
    from toxic_service.commands.serve import load_bundle_settings
    from toxic_service.errors import BundleError
    from toxic_service.scoring import build_scorer

    if not bias:
        raise click.UsageError("say what to evaluate: --bias (identity bias on the generated templates)")
    settings = load_bundle_settings(bundle, sqlite_path)
    scorer = build_scorer(settings)
    try:
        meta = scorer.metadata
        if TOXIC not in scorer.labels:
            raise BundleError(
                f"{settings.bundle_dir}: the bundle serves no {TOXIC!r} label (labels: {', '.join(scorer.labels)}); "
                "the bias metrics rank sentences by it"
            )
        texts = sentences(split)
        scores: list[dict[str, float]] = []
        with progress_bar(f"scoring {split} templates", total=len(texts), unit="sentences", delay=2.0) as bar:
            for start in range(0, len(texts), CHUNK):
                chunk = texts[start : start + CHUNK]
                scores.extend(scorer.score([s.text for s in chunk]))
                bar.update(len(chunk))
    finally:
        scorer.close()
    report = measure(texts, scores, THRESHOLD)

    trained = meta.trained_labels or meta.labels
    click.echo(f"bundle  {settings.bundle_dir} ({meta.model_source or 'source not recorded'})")
    click.echo(f"split   {split}: {report.sentences} sentences, {len(report.terms)} identity terms, "
               f"threshold {report.threshold:g}")
    for label in (TOXIC, IDENTITY_HATE):
        if label in meta.labels and label not in trained:
            click.echo(f"warning: {label!r} is not among the bundle's trained labels: its figures mean nothing")
    click.echo()
    for line in table_lines(report) + [""] + summary_lines(report):
        click.echo(line)
    if json_file is not None:
        document = {
            "bundle": str(settings.bundle_dir),
            "model_source": meta.model_source,
            "split": split,
            **report.to_dict(),
        }
        try:
            json_file.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(f"--json {json_file}: cannot write it ({exc.strerror})") from None
        click.echo(f"wrote {json_file}", err=True)
