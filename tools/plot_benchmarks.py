"""Draws docs/benchmarks.md's figures as two plots, from the figures the benchmarks wrote there.

    .venv/bin/python tools/plot_benchmarks.py [--docs docs/benchmarks.md] [--out docs]

Writes benchmarks-throughput.png (comments/s by batch size, for each conversion graph and
thread count of the `bench service` run) and benchmarks-memory.png (the stack's memory by
component in the 1 GB container, from `bench provision`; a worker's by runtime, from `bench
service`). The benchmarks write Markdown only, so the numbers are read back from their own
sections (between the `<!-- bench:NAME:start/end -->` markers), never from the hand-written
notes beside them: run this after `make bench` and both plots show that run.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
THROUGHPUT_PNG = "benchmarks-throughput.png"
MEMORY_PNG = "benchmarks-memory.png"
# The stack's processes as `bench provision` sums them, bottom to top in the stacked bars.
STACK_ROWS = ("sum: gunicorn workers", "sum: gunicorn master", "sum: nginx master", "sum: nginx workers")
PHASES = ("idle", "peak under load", "after load")


class FigureError(ValueError):
    """The document lacks a figure the plots need; says which file, section and row."""


@dataclass(frozen=True)
class BatchRow:
    batch: int
    threads: int
    cold: float  # comments/s
    warm: float


@dataclass(frozen=True)
class Figures:
    batches: tuple[BatchRow, ...]  # the default graph
    unrolled: dict[int, float]  # batch -> comments/s, same run, 1 thread, cold cache
    runtimes: dict[str, tuple[float, float]]  # runtime -> (RSS after single comments, after every batch size), MB
    stack: dict[str, dict[str, tuple[float, float]]]  # phase -> component -> (RSS, PSS), MB
    stack_target_mb: float
    service_date: str
    provision_date: str


def section(document: str, name: str, path: Path) -> str:
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    i, j = document.find(start), document.find(end)
    if i == -1 or j == -1 or j < i:
        raise FigureError(f"{path}: no `bench {name}` section (markers {start} ... {end})")
    return document[i + len(start) : j]


def table_rows(text: str, header_start: str, where: str) -> list[list[str]]:
    """The cells of the Markdown table whose header row starts with `header_start`."""
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if line.startswith("| " + header_start):
            rows = []
            for row in lines[n + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append([cell.strip() for cell in row.strip().strip("|").split("|")])
            return rows
    raise FigureError(f"{where}: no table with a header starting {header_start!r}")


def number(cell: str, where: str) -> float:
    match = re.search(r"\d[\d,]*(?:\.\d+)?", cell.replace("*", ""))
    if not match:
        raise FigureError(f"{where}: expected a number, found {cell!r}")
    return float(match.group().replace(",", ""))


def date_of(text: str, where: str) -> str:
    match = re.search(r"^- Date: (.+)$", text, re.M)
    if not match:
        raise FigureError(f"{where}: no `- Date:` line")
    return match.group(1).strip()


def read_figures(path: Path) -> Figures:
    try:
        document = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FigureError(f"{path}: cannot read it ({exc.strerror}); run `make bench` first") from exc
    service = section(document, "service", path)
    where = f"{path}, bench service"
    batches = []
    for cells in table_rows(service, "batch | interpreter threads", where):
        if not cells[0].isdigit():  # the seed-style row: one comment per request
            continue
        batches.append(BatchRow(int(cells[0]), int(cells[1]), number(cells[4], where), number(cells[6], where)))
    if not batches:
        raise FigureError(f"{where}: the batch table has no rows")
    match = re.search(
        r"--unrolled`.*?: ([\d,]+) / ([\d,]+) comments/s in batches of (\d+) / (\d+)", service, re.S
    )
    if not match:
        raise FigureError(f"{where}: no `--unrolled` comparison (\"A / B comments/s in batches of X / Y\")")
    unrolled = {int(match.group(3)): number(match.group(1), where), int(match.group(4)): number(match.group(2), where)}
    runtimes = {
        cells[0]: (number(cells[1], where), number(cells[2], where))
        for cells in table_rows(service, "runtime | worker RSS", where)
    }

    provision = section(document, "provision", path)
    where = f"{path}, bench provision"
    rows = {cells[0]: cells[1:] for cells in table_rows(provision, "process | idle", where)}
    stack: dict[str, dict[str, tuple[float, float]]] = {phase: {} for phase in PHASES}
    for name in STACK_ROWS:
        if name not in rows:
            raise FigureError(f"{where}: the memory table has no row {name!r}")
        for phase, cell in zip(PHASES, rows[name], strict=True):
            rss, _, pss = cell.partition("/")
            stack[phase][name.removeprefix("sum: ")] = (number(rss, where), number(pss, where))
    target = re.search(r"whole-stack RSS <= (\d+) MB", provision)
    if not target:
        raise FigureError(f"{where}: no `whole-stack RSS <= N MB` target")
    return Figures(
        batches=tuple(batches),
        unrolled=unrolled,
        runtimes=runtimes,
        stack=stack,
        stack_target_mb=float(target.group(1)),
        service_date=date_of(service, f"{path}, bench service"),
        provision_date=date_of(provision, where),
    )


def _label_bars(ax, bars, fmt: str) -> None:
    for bar in bars:
        ax.annotate(fmt.format(bar.get_height()), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")


def plot_throughput(fig_data: Figures, out: Path) -> Path:
    import matplotlib.pyplot as plt

    sizes = sorted({row.batch for row in fig_data.batches})
    by = {(row.batch, row.threads): row for row in fig_data.batches}
    series = [
        ("word-projection (default), 1 thread, cold cache", [by.get((b, 1)) and by[(b, 1)].cold for b in sizes]),
        ("word-projection, 1 thread, warm cache", [by.get((b, 1)) and by[(b, 1)].warm for b in sizes]),
        ("word-projection, 2 threads, cold cache", [by.get((b, 2)) and by[(b, 2)].cold for b in sizes]),
        ("unrolled (model import --unrolled), 1 thread, cold", [fig_data.unrolled.get(b) for b in sizes]),
    ]
    fig, ax = plt.subplots(figsize=(8, 4.6), dpi=110)
    width = 0.8 / len(series)
    for k, (label, values) in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(sizes))]
        kept = [(x, v) for x, v in zip(xs, values, strict=True) if v]
        bars = ax.bar([x for x, _ in kept], [v for _, v in kept], width, label=label)
        _label_bars(ax, bars, "{:,.0f}")
    ax.set_xticks(range(len(sizes)), [f"batches of {b}" for b in sizes])
    ax.set_ylabel("comments per second (end to end)")
    ax.set_title(f"bench service: throughput by batch size and graph ({fig_data.service_date})", fontsize=10)
    ax.axhline(5000, color="grey", linestyle="--", linewidth=0.8)
    ax.annotate("target: 5,000 comments/s per core", (len(sizes) - 0.5, 5000), ha="right", va="bottom",
                fontsize=8, color="grey", xytext=(0, 2), textcoords="offset points")
    ax.set_ylim(0, max(v for _, values in series for v in values if v) * 1.25)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / THROUGHPUT_PNG
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_memory(fig_data: Figures, out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, (stack_ax, worker_ax) = plt.subplots(
        1, 2, figsize=(10, 4.6), dpi=110, gridspec_kw={"width_ratios": [3, 2]}
    )
    components = [name.removeprefix("sum: ") for name in STACK_ROWS]
    bottoms = [0.0] * len(PHASES)
    for component in components:
        values = [fig_data.stack[phase][component][0] for phase in PHASES]
        stack_ax.bar(PHASES, values, 0.55, bottom=bottoms, label=component)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    pss = [sum(v[1] for v in fig_data.stack[phase].values()) for phase in PHASES]
    for i, (total, p) in enumerate(zip(bottoms, pss, strict=True)):
        stack_ax.annotate(f"RSS {total:.0f} MB\nPSS {p:.0f} MB", (i, total), ha="center", va="bottom",
                          fontsize=8, xytext=(0, 2), textcoords="offset points")
    stack_ax.plot(range(len(PHASES)), pss, "k_", markersize=30, label="PSS sum (real footprint)")
    stack_ax.axhline(fig_data.stack_target_mb, color="grey", linestyle="--", linewidth=0.8)
    stack_ax.annotate(f"target: {fig_data.stack_target_mb:.0f} MB RSS", (-0.3, fig_data.stack_target_mb),
                      va="bottom", fontsize=8, color="grey")
    stack_ax.set_ylim(0, fig_data.stack_target_mb * 1.5)  # room above the target line for the legend
    stack_ax.set_ylabel("MB (RSS, each process counted in full)")
    stack_ax.set_title(f"bench provision: nginx + gunicorn, 2 workers, 1 GB\n({fig_data.provision_date})",
                       fontsize=10)
    stack_ax.legend(fontsize=8, loc="upper left", ncol=2, markerscale=0.5)

    runtimes = list(fig_data.runtimes)
    width = 0.38
    for k, (label, idx) in enumerate((("after single comments", 0), ("after every batch size", 1))):
        xs = [i + (k - 0.5) * width for i in range(len(runtimes))]
        bars = worker_ax.bar(xs, [fig_data.runtimes[r][idx] for r in runtimes], width, label=label)
        _label_bars(worker_ax, bars, "{:.0f} MB")
    worker_ax.set_xticks(range(len(runtimes)), runtimes)
    worker_ax.set_yscale("log")
    worker_ax.set_ylim(10, max(v for pair in fig_data.runtimes.values() for v in pair) * 3)
    worker_ax.set_ylabel("one worker's RSS, MB (log scale)")
    worker_ax.set_title(f"bench service: a worker by runtime\n({fig_data.service_date})", fontsize=10)
    worker_ax.legend(fontsize=8, loc="upper left")
    for ax in (stack_ax, worker_ax):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / MEMORY_PNG
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=Path, default=DOCS, help="the benchmarks document (default: docs/benchmarks.md)")
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="directory for the PNGs (default: docs/)")
    args = parser.parse_args(argv)
    try:
        figures = read_figures(args.docs)
    except FigureError as exc:
        print(f"plot_benchmarks: {exc}", file=sys.stderr)
        return 1
    import matplotlib

    matplotlib.use("Agg")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in (plot_throughput(figures, args.out), plot_memory(figures, args.out)):
        print(f"wrote {path} (figures read from {args.docs}'s benchmark-written sections)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
