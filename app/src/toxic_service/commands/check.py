"""`toxic-service check`: load the model and vocabulary exactly as serving does, and prove they work.

Deploys run it against a new release before switching to it: a non-zero exit
(with one line saying what is wrong) keeps the old release in service.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import click

from toxic_service.bundle import load_metadata
from toxic_service.errors import BundleError

TOXIC_SAMPLE = "You are a stupid idiot, I will kill you."
BENIGN_SAMPLE = "Thank you for the helpful edit, the references look good now."


def verify_scores(
    labels: Sequence[str],
    expected_labels: Sequence[str],
    trained_labels: Sequence[str],
    scores: Sequence[Mapping[str, float]],
) -> str:
    """Checks one toxic and one benign result; returns the label that separates them, else BundleError."""
    # The labels are the bundle's, however many: a release with a seventh label passes (the API serves them all).
    if tuple(labels) != tuple(expected_labels):
        raise BundleError(f"check failed: the scorer's labels {list(labels)} differ from the bundle's {list(expected_labels)}")
    if len(scores) != 2:
        raise BundleError(f"check failed: 2 texts gave {len(scores)} results")
    for name, row in zip(("toxic sample", "benign sample"), scores, strict=True):
        if list(row) != list(labels):
            raise BundleError(f"check failed: the {name}'s scores have labels {list(row)}, expected {list(labels)}")
        for label, value in row.items():
            if not isinstance(value, float) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise BundleError(f"check failed: the {name}'s {label} score {value!r} is not a number between 0 and 1")
    toxic, benign = scores
    separating = [label for label in trained_labels if toxic[label] > benign[label]]
    if not separating:
        raise BundleError(
            "check failed: the toxic sample does not score higher than the benign one on any trained label "
            f"({', '.join(trained_labels)}); is the vocabulary the one the model was trained with?"
        )
    return max(separating, key=lambda label: toxic[label] - benign[label])


@click.command("check")
@click.option("--bundle", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Model bundle directory (default: TOXIC_BUNDLE or <data_dir>/model).")
@click.option("--sqlite", "sqlite_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="SQLite vocabulary file; implies the sqlite backend (default: TOXIC_SQLITE_PATH or <data_dir>/vocab.sqlite).")
def command(bundle: Path | None, sqlite_path: Path | None) -> None:
    """Load model and vocabulary as `serve` does, score a toxic and a benign sample, verify the results."""
    from toxic_service.commands.serve import load_bundle_settings
    from toxic_service.scoring import build_scorer

    settings = load_bundle_settings(bundle, sqlite_path)
    started = time.perf_counter()
    meta = load_metadata(settings.bundle_dir)
    scorer = build_scorer(settings)
    try:
        scorer.check_ready()  # the store answers and the model loads (runtimes load on first use)
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        scores = scorer.score([TOXIC_SAMPLE, BENIGN_SAMPLE])
        scored = time.perf_counter() - started
        trained = meta.trained_labels or meta.labels
        best = verify_scores(scorer.labels, meta.labels, trained, scores)
        vocabulary = scorer.store.info()  # the store's own meta, which build_scorer matched to the bundle
    finally:
        close = getattr(scorer, "close", None)
        if close is not None:
            close()
    if settings.vocab_backend == "sqlite":
        store = str(settings.sqlite_file)
    else:
        store = f"mongodb {settings.mongodb_database}.{settings.mongodb_collection}"
    click.echo(f"bundle      {settings.bundle_dir} (runtime {settings.runtime}, max_len {meta.max_len})")
    click.echo(f"vocabulary  {store} ({vocabulary.size} words, checksum {vocabulary.checksum[:19]}…)")
    click.echo(f"labels      {len(scorer.labels)}: {', '.join(scorer.labels)}")
    click.echo(f"{'label':<14} {'toxic':>8} {'benign':>8}")
    for label in scorer.labels:
        mark = "" if label in trained else "  (untrained)"
        click.echo(f"{label:<14} {scores[0][label]:8.4f} {scores[1][label]:8.4f}{mark}")
    click.echo(f"loaded in {loaded:.2f} s, scored 2 texts in {scored * 1000:.1f} ms; '{best}' separates them best")
    click.echo("OK")
