"""Benchmarks (not tests): each module measures one thing and returns a Markdown section.

Contract for a benchmark module `bench/<name>.py`:

    def run(args: argparse.Namespace) -> Section

`args` carries `quick` (bool: fewer repetitions, for development; the section
says so) and `repo` (Path). `python -m bench` runs every such module (or the
ones named) and rewrites only that module's part of docs/benchmarks.md, between
`<!-- bench:<name>:start -->` and `<!-- bench:<name>:end -->`, so benchmarks
written by different people, run at different times, never clobber each other.
The header of each section (command, machine, date) is added here, uniformly.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# The project's one percentile (tools/loadgen.py also runs inside the test hosts); re-exported for the benchmarks.
from tools.loadgen import percentile

__all__ = ["DOCS", "REPO", "Section", "Target", "machine", "median", "ms", "percentile", "render", "replace_section", "table"]

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Target:
    """One stated goal and how this run did against it."""

    goal: str
    measured: str
    passed: bool


@dataclass(frozen=True)
class Section:
    name: str  # the marker name: bench:<name>:start
    title: str
    command: str  # the command that reproduces it, from the repository root
    body: str  # Markdown: the figures and what they mean
    targets: tuple[Target, ...] = ()
    quick: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


def machine() -> str:
    """nproc, CPU model and vector width, memory, Python and kernel: enough to judge whether figures compare."""
    cpu = platform.processor() or "unknown CPU"
    vector = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == (platform.processor() or "unknown CPU"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                # XNNPACK picks its kernels by these. Two machines both named "AMD EPYC" ran LiteRT 4x apart
                # (TensorFlow 1.3x; 2026-11-29 and 2026-12-01): the model name alone does not tell them apart.
                flags = set(line.split(":", 1)[1].split())
                vector = " (AVX-512)" if "avx512f" in flags else " (AVX2, no AVX-512)" if "avx2" in flags else ""
                break
    except OSError:
        pass
    cpu += vector
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
                break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"nproc {cpus}, {cpu}{mem}, Python {platform.python_version()} ({sys.implementation.name}), "
        f"{platform.system()} {platform.release()}"
    )


def median(values: Sequence[float]) -> float:
    """The 50th percentile; NaN for no values (as before percentile moved to tools/loadgen.py)."""
    value = percentile(values, 50)
    return math.nan if value is None else value


def ms(seconds: float) -> str:
    """A duration for a table: 3 significant figures in milliseconds."""
    value = seconds * 1000
    if value >= 100:
        return f"{value:,.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render(section: Section, when: _dt.datetime | None = None) -> str:
    """The Markdown between a section's markers: title, how to reproduce, where and when, targets, figures."""
    when = when or _dt.datetime.now(_dt.timezone.utc)
    parts = [
        f"## {section.title}",
        "",
        f"- Command: `{section.command}`",
        f"- Machine: {machine()}",
        f"- Date: {when.strftime('%Y-%m-%d %H:%M UTC')}",
    ]
    if section.quick:
        parts.append("- Profile: **quick** (fewer repetitions; development only, not the figures to quote)")
    if section.targets:
        parts += ["", "### Targets", ""]
        parts.append(
            table(
                ["target", "measured", "result"],
                [(t.goal, t.measured, "**pass**" if t.passed else "**FAIL**") for t in section.targets],
            )
        )
    parts += ["", section.body.strip()]
    if section.notes:
        parts += [""] + [f"> {note}" for note in section.notes]
    return "\n".join(parts).rstrip() + "\n"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def replace_section(document: str, name: str, content: str) -> str:
    """`document` with the text between `name`'s markers replaced; the pair is appended when absent."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise ValueError(f"bad section name {name!r}")
    start, end = markers(name)
    block = f"{start}\n{content.rstrip()}\n{end}"
    i, j = document.find(start), document.find(end)
    if i == -1 and j == -1:
        return document.rstrip() + "\n\n" + block + "\n"
    if i == -1 or j == -1 or j < i or document.count(start) != 1 or document.count(end) != 1:
        raise ValueError(f"{DOCS.name}: the markers of section {name!r} are unpaired or repeated; fix them by hand")
    return document[:i] + block + document[j + len(end) :]
