"""`toxic-service train-stack`: re-teach one label of a bundle with a char n-gram LR stacked on its logits."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("train-stack")
@click.option(
    "--stack-on",
    "base",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The bundle whose model gives the other labels and the logits (e.g. tox-block's).",
)
@click.option("--vocab", type=_FILE, default=None, help="Its SQLite vocabulary (default: <stack-on>/../vocab.sqlite).")
@click.option("--data", "csv_file", required=True, type=_FILE, help="Training CSV: comment_text and the 0/1 label column.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="New bundle directory.")
@click.option("--label", default="insult", show_default=True, help="The label to stack (a column of --data).")
@click.option(
    "--exclude",
    multiple=True,
    type=_FILE,
    help="Evaluation file(s) (CSV with comment_text/Comment, or JSON {\"texts\": [...]}): refuse any overlap by text hash.",
)
@click.option(
    "--mitigate",
    multiple=True,
    help="A label to de-bias (e.g. toxic, identity_hate): distilled from the bundle on the training CSV's and "
    "--distil's comments, plus the identity templates' mitigation half (never the evaluation half).",
)
@click.option(
    "--distil",
    multiple=True,
    type=_FILE,
    help="Unlabelled comments (CSV with comment_text/Comment, or JSON {\"texts\": [...]}) to distil --mitigate labels on; "
    "comments also in an --exclude file are dropped.",
)
@click.option("--seed", type=int, default=1337, show_default=True, help="Seed of the 5-fold split.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Default: <out>/train_report.json.")
def command(base, vocab, csv_file, out_dir, label, exclude, mitigate, distil, seed, report) -> None:
    """Stack a hashed char 1-5-gram LR on the bundle's logits for LABEL; other labels stay the bundle's.

    Hash width, min_df and both C values are chosen by 5-fold CV on --data only. Each --mitigate label
    becomes a stacked label too, its template weight chosen by CV on the templates' mitigation half.
    Needs scikit-learn (pip install 'toxic-service[train]'); serving the result does not.
    """
    from toxic_service.stack_training import StackConfig, train_stack

    cfg = StackConfig(
        base_bundle=base,
        vocab_path=vocab or base.parent / "vocab.sqlite",
        csv_path=csv_file,
        out_dir=out_dir,
        label=label,
        exclude=tuple(exclude),
        mitigate=tuple(mitigate),
        distil=tuple(distil),
        seed=seed,
    )
    result = train_stack(cfg, log=lambda msg: click.echo(msg, err=True))
    report_path = report or out_dir / "train_report.json"
    doc = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}, **asdict(result)}
    report_path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    click.echo(
        f"{label}: 5-fold CV AUC on {csv_file.name} ({result.n_train} comments): base {result.base_cv_auc:.4f}, "
        f"char n-gram LR {result.ngram_cv_auc:.4f} (width 2^{result.width.bit_length() - 1}, min_df {result.min_df}, "
        f"C {result.ngram_c:g}), stack {result.stack_cv_auc:.4f} (C {result.stack_c:g})"
    )
    for m in result.mitigation:
        click.echo(f"{m.label}: template weight {m.template_weight:g} (3-fold CV by template id on the mitigation half)")
    click.echo(f"wrote {out_dir} (stack.npz {result.stack_bytes / 1e6:.1f} MB), report {report_path}")
