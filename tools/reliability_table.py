#!/usr/bin/env python3
"""Write the figures table of docs/reliability.md from the two profiles' artifact files.

    tools/reliability_table.py SHORT.json FULL.json [--short-label TEXT] [--full-label TEXT] [--write]

SHORT.json and FULL.json are `artifacts/reliability/figures-<profile>.json` as the
reliability suite writes them. Without --write the table is printed; with it, the
table replaces what lies between the `reliability:table` markers of
docs/reliability.md, so the doc never quotes a figure by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
START, END = "<!-- reliability:table:start -->", "<!-- reliability:table:end -->"
MET = {True: "yes", False: "**NO**", None: "-"}


def _generic(name: str) -> str:
    # The sweep's step length differs between profiles ("3 s each" / "10 s each"): one row for both.
    return re.sub(r"\b\d+ s each\b", "N s each", name)


def table(short: dict, full: dict, short_label: str, full_label: str) -> str:
    rows_short = {_generic(row["figure"]): row for row in short["figures"]}
    rows_full = {_generic(row["figure"]): row for row in full["figures"]}
    names = [*rows_short, *(name for name in rows_full if name not in rows_short)]
    lines = [
        f"| figure | {short_label} ({short['when']}) | {full_label} ({full['when']}) | target | met (short / full) |",
        "|---|---|---|---|---|",
    ]
    missing = {"value": "not run", "target": "", "met": None}
    for name in names:
        s, f = rows_short.get(name, missing), rows_full.get(name, missing)
        target = s["target"] or f["target"]
        lines.append(f"| {name} | {s['value']} | {f['value']} | {target} | {MET[s['met']]} / {MET[f['met']]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("short", type=Path)
    parser.add_argument("full", type=Path)
    parser.add_argument("--short-label", default="short")
    parser.add_argument("--full-label", default="full (`make soak`)")
    parser.add_argument("--write", action="store_true", help=f"replace the table in {DOC.name}")
    args = parser.parse_args(argv)
    docs = []
    for path, profile in ((args.short, "short"), (args.full, "full")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"{path}: cannot read the figures ({exc})")
        if not isinstance(doc, dict) or doc.get("profile") != profile or not isinstance(doc.get("figures"), list):
            parser.error(f"{path}: not the figures of the {profile!r} profile (artifacts/reliability/figures-{profile}.json)")
        docs.append(doc)
    text = table(*docs, args.short_label, args.full_label)
    if not args.write:
        print(text)
        return 0
    current = DOC.read_text()
    if current.count(START) != 1 or current.count(END) != 1:
        print(f"{DOC}: needs exactly one {START} and one {END}", file=sys.stderr)
        return 1
    head, rest = current.split(START)
    _, tail = rest.split(END)
    DOC.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    print(f"{DOC}: table rewritten ({len(text.splitlines()) - 2} figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
