#!/usr/bin/env python3
"""Print the requirements of an installed distribution that apply to this platform.

Used by roles/miniconda: the app wheel is installed with --no-deps, then pip installs
exactly these lines. --extra adds an extra's requirements (e.g. tflite on EL7),
--exclude drops a project (e.g. ai-edge-litert, whose wheels need glibc 2.27).
Standard library + pip's vendored `packaging` only: it runs in a fresh environment.
The role runs it with the env's own Python, but like every file the roles ship it keeps
to Python 3.6 (`make lint` runs vermin -t=3.6- on it), so it also works under EL's python3.
"""

import argparse
import email.parser
import sys
from pathlib import Path
from typing import List, Optional

from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name


def requires(dist: str) -> Optional[List[str]]:
    """The Requires-Dist lines of the installed distribution `dist`; None when it is not installed."""
    try:
        from importlib import metadata  # novermin: Python >= 3.8; 3.6 and 3.7 read the dist-info below
    except ImportError:
        return requires_from_dist_info(dist)
    try:
        return metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return None


def requires_from_dist_info(dist: str) -> Optional[List[str]]:
    """What importlib.metadata.requires reads, read directly: <name>-<version>.dist-info/METADATA on sys.path."""
    wanted = canonicalize_name(dist)
    for entry in sys.path:
        directory = Path(entry or ".")
        if not directory.is_dir():
            continue
        for info in sorted(directory.glob("*.dist-info")):
            meta = info / "METADATA"
            if not meta.is_file():
                continue
            headers = email.parser.Parser().parsestr(meta.read_text(encoding="utf-8"), headersonly=True)
            if canonicalize_name(headers.get("Name", "")) == wanted:
                return headers.get_all("Requires-Dist") or []
    return None


def applicable(dist: str, extras: List[str], exclude: List[str]) -> Optional[List[str]]:
    """Requirement strings (markers removed) that hold here for `dist` plus `extras`; None if not installed."""
    raw_lines = requires(dist)
    if raw_lines is None:
        return None
    excluded = {canonicalize_name(name) for name in exclude}
    lines = []
    for raw in raw_lines:
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


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("distribution")
    parser.add_argument("--extra", action="append", default=[])
    parser.add_argument("--exclude", action="append", default=[])
    args = parser.parse_args(argv)
    lines = applicable(args.distribution, args.extra, args.exclude)
    if lines is None:
        print(f"{args.distribution} is not installed in {sys.prefix}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
