"""Draws docs/models.md's identity-bias figure from `toxic-service evaluate --bias --json` reports.

    toxic-service evaluate --bias --json .cache/bias-tox-block.json
    .venv/bin/python tools/plot_bias.py .cache/bias-tox-block.json [MORE.json ...] [--out docs]

Writes bias-fpr-toxic.png: per identity term, the share of its neutral
template sentences whose `toxic` score is at or over the threshold (one bar
series per report, e.g. tox-block and a mitigated bundle from the same run),
grouped by category, with the issue's 5 % target. The figures are the JSON's
own (the command's), never retyped: run this after the command and the plot
shows that run. Like tools/plot_benchmarks.py, it writes into docs/ and the
PNG is committed with the table it illustrates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FPR_PNG = "bias-fpr-toxic.png"
TARGET = 0.05  # issue 13, Must have 3: at most 5 % of the neutral identity templates flagged


class ReportError(ValueError):
    """A report file that cannot be read or lacks a figure; says which file and field."""


def read_report(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportError(
            f"{path}: cannot read it ({exc.strerror}); write it with `toxic-service evaluate --bias --json`"
        ) from exc
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("terms"), list) or not document["terms"]:
        raise ReportError(f"{path}: no 'terms' list (is it an `evaluate --bias --json` report?)")
    for n, row in enumerate(document["terms"]):
        if not isinstance(row, dict) or not {"term", "category", "fpr_toxic"} <= set(row):
            raise ReportError(f"{path}: terms[{n}] lacks 'term', 'category' or 'fpr_toxic'")
    return document


def plot_fpr(reports: list[tuple[str, dict]], out: Path) -> Path:
    """Grouped bars of `fpr_toxic` per term, the first report's term order; returns the PNG's path."""
    import matplotlib.pyplot as plt

    first = reports[0][1]
    terms = [(row["term"], row["category"]) for row in first["terms"]]
    fig, ax = plt.subplots(figsize=(13, 4.8), dpi=110)
    width = 0.8 / len(reports)
    for k, (name, report) in enumerate(reports):
        fpr = {row["term"]: row["fpr_toxic"] for row in report["terms"]}
        xs = [i + (k - (len(reports) - 1) / 2) * width for i in range(len(terms))]
        ax.bar(xs, [fpr.get(term) or 0.0 for term, _ in terms], width,
               label=f"{name}: {report.get('flagged_toxic', 0):.1%} of neutral sentences flagged")
    # A line and a name between categories, so the reader sees which group a spike belongs to.
    start = 0
    for i in range(1, len(terms) + 1):
        if i == len(terms) or terms[i][1] != terms[start][1]:
            ax.annotate(terms[start][1], ((start + i - 1) / 2, 1.12), ha="center", fontsize=8, color="dimgrey")
            if i < len(terms):
                ax.axvline(i - 0.5, color="lightgrey", linewidth=0.8)
            start = i
    ax.axhline(TARGET, color="grey", linestyle="--", linewidth=0.8)
    ax.annotate(f"target: <= {TARGET:.0%} flagged", (-0.5, TARGET), ha="left", va="bottom",
                fontsize=8, color="grey", xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(terms)), [term for term, _ in terms], rotation=90, fontsize=8)
    ax.set_xlim(-0.6, len(terms) - 0.4)
    ax.set_ylim(0, 1.2)  # room above 1.0 for the category names and the legend
    ax.set_ylabel(f"FPR of toxic at {first.get('threshold', 0.5):g}\n(share of the term's neutral sentences)")
    ax.set_title(f"Identity templates, {first.get('split', '?')} half: neutral sentences scored toxic, per term",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0, 0.91))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / FPR_PNG
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="`toxic-service evaluate --bias --json` outputs")
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="directory for the PNG (default: docs/)")
    args = parser.parse_args(argv)
    try:
        documents = [(path, read_report(path)) for path in args.reports]
    except ReportError as exc:
        print(f"plot_bias: {exc}", file=sys.stderr)
        return 1
    import matplotlib

    matplotlib.use("Agg")
    args.out.mkdir(parents=True, exist_ok=True)
    path = plot_fpr([(str(doc.get("model_source") or p.stem), doc) for p, doc in documents], args.out)
    print(f"wrote {path} (figures read from {', '.join(map(str, args.reports))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
