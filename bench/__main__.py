"""`python -m bench [NAME ...]`: run the benchmarks and rewrite their sections of docs/benchmarks.md.

Every module under bench/ exposing `run(args) -> Section` is a benchmark;
with no NAME, all of them run, in name order. Each section is written as soon
as its benchmark finishes, under a file lock, re-reading the document first,
so two benchmarks run at the same time both land. A benchmark that raises
leaves its old section untouched and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import os
import pkgutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import bench
from bench import DOCS, REPO, Section, render, replace_section


def discover() -> dict[str, object]:
    found = {}
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if callable(getattr(module, "run", None)):
            found[info.name] = module
    return dict(sorted(found.items()))


def write_section(docs: Path, section: Section) -> None:
    """Replace `section`'s part of `docs` atomically, holding a lock against concurrent writers."""
    docs.parent.mkdir(parents=True, exist_ok=True)
    # The lock is on the directory: the document itself is replaced by a rename, and no lock file is left behind.
    lock = os.open(docs.parent, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = docs.read_text(encoding="utf-8") if docs.exists() else "# Benchmarks\n"
        updated = replace_section(text, section.name, render(section))
        fd, tmp = tempfile.mkstemp(prefix=".benchmarks-", suffix=".md", dir=docs.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(updated)
        os.chmod(tmp, 0o644)
        os.replace(tmp, docs)
    finally:
        os.close(lock)  # releases the lock


def main(argv: list[str] | None = None) -> int:
    modules = discover()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {', '.join(modules)})")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, for development (the section says so)")
    parser.add_argument("--no-write", action="store_true", help="print the sections instead of writing the document")
    parser.add_argument("--docs", type=Path, default=DOCS, help="document to rewrite (default: docs/benchmarks.md)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in modules]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(modules)}")
    args.repo = REPO
    failed = []
    for name in args.names or list(modules):
        started = time.monotonic()
        print(f"bench {name}: running", file=sys.stderr, flush=True)
        try:
            section = modules[name].run(args)
        except Exception:  # noqa: BLE001 - report and carry on with the other benchmarks
            traceback.print_exc()
            print(f"bench {name}: FAILED; its section in {args.docs} is unchanged", file=sys.stderr)
            failed.append(name)
            continue
        if section.name != name:
            raise SystemExit(f"bench {name}: run() returned section {section.name!r}; it must be named after its module")
        if args.no_write:
            print(render(section))
        else:
            write_section(args.docs, section)
        for target in section.targets:
            print(f"bench {name}: {'pass' if target.passed else 'FAIL'}: {target.goal}: {target.measured}", file=sys.stderr)
        where = "printed" if args.no_write else f"written to {args.docs}"
        print(f"bench {name}: done in {time.monotonic() - started:.0f} s, {where}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
