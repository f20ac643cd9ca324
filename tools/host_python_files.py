"""The Python that the roles put on a target host, and the check that it runs on the host's Python.

One list for `make lint` and the tests: a file under roles/*/files/ or roles/*/templates/ is
host-side Python when its name ends in .py (or .py.j2) or its first line is a python #! line.
Templates are rendered first (a plain Jinja environment; what an unset variable gives is empty),
so vermin reads what a host runs, not Jinja syntax.

    python tools/host_python_files.py            print the files, one a line (templates as .j2)
    python tools/host_python_files.py check      vermin -t=3.6- over them; exit non-zero when one
                                                 needs more than Python 3.6 (EL7 and EL8's python3)

--root points at another tree with a roles/ directory (the tests use scratch ones).
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The oldest python3 a target has: EL7's (and EL8's platform Python) is 3.6.
MINIMUM = "3.6"
VERMIN_ARGS = [
    f"-t={MINIMUM}-",
    "--violations",  # only what breaks the target, each with its line
    "--eval-annotations",  # annotations are evaluated at run time (no `from __future__ import annotations` on 3.6)
    "--no-tips",
    "--no-config-file",  # the flags here are the whole configuration
]


def is_python(path: Path) -> bool:
    name = path.name[: -len(".j2")] if path.name.endswith(".j2") else path.name
    if name.endswith(".py"):
        return True
    with open(path, "rb") as handle:
        first = handle.readline(200)
    return first.startswith(b"#!") and b"python" in first


# Not put there by a role, but run on a test host's own python3 by the deploy and reliability suites.
RUN_ON_TEST_HOSTS = ("tools/loadgen.py",)


def host_python_files(root: Path) -> list[Path]:
    """Sorted host-side Python files (templates still as .j2) under root/roles, then RUN_ON_TEST_HOSTS."""
    found = []
    for kind in ("files", "templates"):
        for path in sorted((root / "roles").glob(f"*/{kind}/**/*")):
            if path.is_file() and is_python(path):
                found.append(path)
    found.extend(root / name for name in RUN_ON_TEST_HOSTS if (root / name).is_file())
    return found


def render(template: Path, out_dir: Path, root: Path) -> Path:
    """The template as a host would get it; undefined variables render empty."""
    import jinja2

    # Renders a Python script, not HTML: escaping would change the code vermin reads.
    env = jinja2.Environment(undefined=jinja2.Undefined, keep_trailing_newline=True)  # noqa: S701
    rel = template.relative_to(root / "roles")
    target = out_dir / rel.parent / rel.name[: -len(".j2")]
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        text = env.from_string(template.read_text()).render()
    except jinja2.TemplateError as exc:
        raise SystemExit(f"{template}: cannot render it to check its Python: {exc}") from exc
    target.write_text(text)
    return target


def checked_paths(root: Path, out_dir: Path) -> list[Path]:
    """The files vermin reads: plain ones as they are, templates rendered into out_dir."""
    return [render(p, out_dir, root) if p.name.endswith(".j2") else p for p in host_python_files(root)]


def check(root: Path) -> int:
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    if vermin is None:
        print("host_python_files: vermin is not installed (it is in requirements.txt: `make venv`)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="host-python-") as tmp:
        paths = checked_paths(root, Path(tmp))
        if not paths:
            print(f"host_python_files: no host-side Python under {root / 'roles'}", file=sys.stderr)
            return 2
        # vermin reports a file it cannot parse and still exits 0: a syntax error must fail here.
        for path in paths:
            try:
                ast.parse(path.read_text(), filename=str(path))
            except SyntaxError as exc:
                print(f"host_python_files: {path}:{exc.lineno}: not valid Python: {exc.msg}", file=sys.stderr)
                return 1
        result = subprocess.run([vermin, *VERMIN_ARGS, *map(str, paths)], check=False)
    if result.returncode != 0:
        print(f"host_python_files: a file above needs more than Python {MINIMUM}, the oldest python3 a target runs",
              file=sys.stderr)
    return result.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", choices=("list", "check"), default="list")
    parser.add_argument("--root", type=Path, default=REPO, help="tree holding roles/ (default: this repository)")
    args = parser.parse_args(argv)
    if args.action == "check":
        return check(args.root)
    for path in host_python_files(args.root):
        print(path.relative_to(args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
