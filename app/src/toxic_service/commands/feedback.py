"""`toxic-service feedback export|stats`: the suggestscore feedback kept on this host.

Both read the store the settings name (TOXIC_FEEDBACK_DB; on a provisioned
host /etc/toxic-service/toxic.env sets it to the file in shared/; with the
mongodb vocabulary backend and no TOXIC_FEEDBACK_DB, MongoDB), and the
served bundle (TOXIC_BUNDLE) for its attribute -> label map.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


def _open(settings):
    from toxic_service.bundle import load_metadata
    from toxic_service.feedback import feedback_store

    store = feedback_store(settings)
    suggestions = list(store.suggestions())
    meta = load_metadata(settings.bundle_dir)
    return store, suggestions, meta


@click.group("feedback")
def command() -> None:
    """Export or summarise the comments:suggestscore feedback stored on this host."""


@command.command("export")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV file to write.")
@click.option(
    "--attribute",
    "attributes",
    multiple=True,
    help="Attribute to export as a label column (repeat; default: every served attribute with stored feedback). "
    "A row lacking one of them is skipped.",
)
def export(out: Path, attributes: tuple[str, ...]) -> None:
    """Write a Jigsaw-format CSV (id, comment_text, 0/1 label columns; value >= 0.5 is 1) that `train` reads."""
    from toxic_service.feedback import feedback_location
    from toxic_service.feedback.export import ExportError, export_csv
    from toxic_service.importers import InputFileError
    from toxic_service.settings import Settings

    settings = Settings()
    _, suggestions, meta = _open(settings)
    try:
        result = export_csv(suggestions, meta.perspective_attributes or {}, out, attributes)
    except ExportError as exc:
        raise InputFileError(f"{feedback_location(settings)}: {exc}") from None
    click.echo(f"wrote {result.rows} rows to {result.path} (columns: {', '.join(result.columns)})")
    if result.skipped_no_text:
        click.echo(f"skipped {result.skipped_no_text} suggestions stored without their text (doNotStore)")
    for name, n in sorted(result.skipped_missing.items()):
        click.echo(f"skipped {n} rows without a {name} suggestion (export fewer columns with --attribute)")
    for name, n in sorted(result.unmapped.items()):
        click.echo(f"ignored {n} {name} suggestions: the served bundle has no label for {name}")
    if result.rows < 10:
        click.echo(f"note: train needs at least 10 rows; this file has {result.rows}", err=True)


@command.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--no-model", is_flag=True, help="Counts only: do not load the model to compute agreement.")
def stats(as_json: bool, no_model: bool) -> None:
    """Counts per attribute and community, and how often the current model's flags agree with the suggestions."""
    from toxic_service.errors import ToxicServiceError
    from toxic_service.feedback import feedback_location
    from toxic_service.feedback.stats import add_agreement, count
    from toxic_service.settings import Settings

    settings = Settings()
    _, suggestions, meta = _open(settings)
    figures = count(suggestions)
    if no_model:
        figures.agreement_note = "not computed (--no-model)"
    else:
        from toxic_service.scoring import build_scorer

        try:
            scorer = build_scorer(settings)
        except ToxicServiceError as exc:
            figures.agreement_note = f"not computed: the model cannot be loaded ({exc})"
        else:
            try:
                add_agreement(
                    figures,
                    suggestions,
                    meta.perspective_attributes or {},
                    meta.trained_labels or meta.labels,
                    scorer.score,
                    settings.thresholds_for(meta.labels, meta.thresholds),
                    batch=settings.max_batch,
                )
            finally:
                scorer.close()
    if as_json:
        click.echo(json.dumps(figures.to_json(), indent=2))
        return
    click.echo(f"{figures.suggestions} suggestions in {feedback_location(settings)} ({figures.without_text} without text)")
    click.echo(f"{'attribute':<20} {'suggestions':>11} {'yes (>=0.5)':>11} {'model agrees':>14}")
    for name, n in sorted(figures.per_attribute.items()):
        agreement = figures.agreement.get(name)
        shown = (
            f"{agreement.fraction:.3f} of {agreement.compared}" if agreement and agreement.fraction is not None else "-"
        )
        click.echo(f"{name:<20} {n:>11} {figures.yes_per_attribute[name]:>11} {shown:>14}")
    click.echo(f"{'community':<20} {'suggestions':>11}")
    for name, n in sorted(figures.per_community.items()):
        click.echo(f"{name:<20} {n:>11}")
    if figures.agreement_note:
        click.echo(figures.agreement_note)
