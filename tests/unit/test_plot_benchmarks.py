"""tools/plot_benchmarks.py reads the benchmark-written sections (and only those) and draws both plots."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tools import plot_benchmarks as plots  # noqa: E402

SERVICE = """<!-- bench:service:start -->
## Service: seed-style request path vs ours

- Command: `.venv/bin/python -m bench service`
- Date: 2026-12-01 10:00 UTC

| batch | interpreter threads | batches | cold: median / p95 | comments/s (cold) | per CPU-second (cold) | comments/s (warm) |
|---|---|---|---|---|---|---|
| 64 | 1 | 40 | 12.6 ms / 14.7 ms | 1,111 | 1,112 | 2,222 |
| 256 | 1 | 20 | 45.8 ms / 50.1 ms | 3,333 | 3,334 | 4,444 |
| 64 | 2 | 40 | 12.7 ms / 14.1 ms | 5,555 | 3,078 | 6,666 |
| 1 per request (seed-style) | TF default | 150 | 151 ms / 458 ms | 5.3 |  |  |

**Which graph.** The same source model converted with `model import --unrolled` (one matmul per step), same run,
1 interpreter thread, cold cache: 777 / 888 comments/s in batches of 64 / 256; the default runs faster.

| runtime | worker RSS after single comments | worker RSS after every batch size | worker peak RSS |
|---|---|---|---|
| litert | 81 MB | 91 MB | 96 MB |
| keras | 701 MB | 702 MB | 761 MB |
<!-- bench:service:end -->
"""

PROVISION = """<!-- bench:provision:start -->
## Provisioning

- Date: 2026-12-01 11:00 UTC

| target | measured | result |
|---|---|---|
| whole-stack RSS <= 240 MB, 2 workers, SQLite, 1 GB container | ... | **pass** |

| process | idle: RSS / PSS | peak under load: RSS / PSS | after load: RSS / PSS |
|---|---|---|---|
| nginx master (pid 1) | 7.0 MB / 2.0 MB | 7.1 MB / 2.1 MB | 7.2 MB / 2.2 MB |
| sum: nginx master | 7.0 MB / 2.0 MB | 7.1 MB / 2.1 MB | 7.2 MB / 2.2 MB |
| sum: nginx workers | 3.0 MB / 1.0 MB | 3.1 MB / 1.1 MB | 3.2 MB / 1.2 MB |
| sum: gunicorn master | 20.0 MB / 10.0 MB | 21.0 MB / 11.0 MB | 22.0 MB / 12.0 MB |
| sum: gunicorn workers | 150.0 MB / 100.0 MB | 160.5 MB / 110.5 MB | 170.0 MB / 120.0 MB |
| **whole stack (nginx + gunicorn)** | **180.0 MB** / **113.0 MB** | **191.7 MB** / **124.7 MB** | **201.4 MB** / **135.4 MB** |
<!-- bench:provision:end -->
"""

# A hand-written table between sections with the same header: must not be read.
NOTE = """
### A note (not written by the benchmark)

| batch | interpreter threads | batches | cold: median / p95 | comments/s (cold) | per CPU-second (cold) | comments/s (warm) |
|---|---|---|---|---|---|---|
| 64 | 1 | 1 | 1 ms / 1 ms | 99,999 | 1 | 99,999 |
"""


def write_doc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "benchmarks.md"
    path.write_text(text)
    return path


def test_reads_the_benchmark_sections_only(tmp_path):
    figures = plots.read_figures(write_doc(tmp_path, "# Benchmarks\n" + NOTE + SERVICE + NOTE + PROVISION))
    assert figures.batches == (
        plots.BatchRow(64, 1, 1111.0, 2222.0),
        plots.BatchRow(256, 1, 3333.0, 4444.0),
        plots.BatchRow(64, 2, 5555.0, 6666.0),
    )
    assert figures.unrolled == {64: 777.0, 256: 888.0}
    assert figures.runtimes == {"litert": (81.0, 91.0), "keras": (701.0, 702.0)}
    assert figures.stack["peak under load"] == {
        "gunicorn workers": (160.5, 110.5),
        "gunicorn master": (21.0, 11.0),
        "nginx master": (7.1, 2.1),
        "nginx workers": (3.1, 1.1),
    }
    assert figures.stack["after load"]["gunicorn workers"] == (170.0, 120.0)
    assert figures.stack_target_mb == 240.0
    assert (figures.service_date, figures.provision_date) == ("2026-12-01 10:00 UTC", "2026-12-01 11:00 UTC")


def test_the_real_document_has_every_figure_the_plots_need():
    figures = plots.read_figures(plots.DOCS)
    assert {row.batch for row in figures.batches} >= {64, 256}
    assert set(figures.unrolled) >= {64, 256} and {"litert", "keras"} <= set(figures.runtimes)
    assert all(len(figures.stack[phase]) == 4 for phase in plots.PHASES)


def test_draws_both_pngs(tmp_path, capsys):
    doc = write_doc(tmp_path, SERVICE + PROVISION)
    assert plots.main(["--docs", str(doc), "--out", str(tmp_path / "out")]) == 0
    for name in (plots.THROUGHPUT_PNG, plots.MEMORY_PNG):
        data = (tmp_path / "out" / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, name
    assert capsys.readouterr().out.count("wrote ") == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SERVICE, "no `bench provision` section"),
        (PROVISION, "no `bench service` section"),
        (SERVICE.replace("--unrolled", "--other") + PROVISION, "no `--unrolled` comparison"),
        (SERVICE + PROVISION.replace("| sum: nginx workers", "| nginx workers"), "no row 'sum: nginx workers'"),
    ],
)
def test_missing_figures_fail_naming_file_and_section(tmp_path, capsys, text, message):
    doc = write_doc(tmp_path, text)
    assert plots.main(["--docs", str(doc), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"plot_benchmarks: {doc}") and message in err
    assert not (tmp_path / "out").exists(), "nothing is drawn from a document that lacks figures"
