#!/usr/bin/env python3
"""Print the requirements of an installed distribution that apply to this platform.

Used by roles/miniconda: the app wheel is installed with --no-deps, then pip installs
exactly these lines. --extra adds an extra's requirements (e.g. tflite on EL7),
--exclude drops a project (e.g. ai-edge-litert, whose wheels need glibc 2.27).
Standard library + pip's vendored `packaging` only: it runs in a fresh environment.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name


def applicable(dist: str, extras: list[str], exclude: list[str]) -> list[str]:
    """Requirement strings (markers removed) that hold here for `dist` plus `extras`."""
    excluded = {canonicalize_name(name) for name in exclude}
    lines = []
    for raw in metadata.requires(dist) or []:
        req = Requirement(raw)
        if canonicalize_name(req.name) in excluded:
            continue
        if req.marker is not None:
            contexts = [{"extra": ""}] + [{"extra": extra} for extra in extras]
            if not any(req.marker.evaluate(ctx) for ctx in contexts):
                continue
            req.marker = None
        lines.append(str(req))
    return sorted(set(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("distribution")
    parser.add_argument("--extra", action="append", default=[])
    parser.add_argument("--exclude", action="append", default=[])
    args = parser.parse_args(argv)
    try:
        lines = applicable(args.distribution, args.extra, args.exclude)
    except metadata.PackageNotFoundError:
        print(f"{args.distribution} is not installed in {sys.prefix}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
