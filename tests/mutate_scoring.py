"""Run the scorer's tests against mutants of scoring.py, each in a copy of app/src, and say which test fails.

    .venv/bin/python tests/mutate_scoring.py [pytest paths...]   (default: tests/unit/test_scoring.py)

Why: the order-blind fixture model once let a scorer that reversed words or dropped repeats pass every
test (issue 10). Each mutant below is a bug the end-to-end test in test_scoring.py must catch; this
script applies it to a copy (the repository's own files are never touched), checks that pytest imports
the copy, and exits 1 when a mutant survives or when the unmutated copy does not pass first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCORING = Path("toxic_service") / "scoring.py"
TOKENIZED = "tokenized = [tokenize(text, meta.tokenizer) for text in texts]"
PADDED = "return pad([encode(words, mapping, meta) for words in tokenized], meta.max_len, meta.pad_index)"
POST_PADDED = """rows = [encode(words, mapping, meta)[-meta.max_len :] for words in tokenized]
        import numpy as np

        out = np.full((len(rows), meta.max_len), meta.pad_index, dtype=np.int32)
        for r, seq in enumerate(rows):
            out[r, : len(seq)] = seq
        return out"""

# name -> (text in scoring.py, its replacement)
MUTANTS = {
    "reverse each text's words": (TOKENIZED, "tokenized = [tokenize(text, meta.tokenizer)[::-1] for text in texts]"),
    "drop repeated words": (TOKENIZED, "tokenized = [list(dict.fromkeys(tokenize(text, meta.tokenizer))) for text in texts]"),
    "post-pad instead of pre-pad": (PADDED, POST_PADDED),
    "keep the first max_len words, not the last": (
        PADDED,
        "return pad([encode(words, mapping, meta)[: meta.max_len] for words in tokenized], meta.max_len, meta.pad_index)",
    ),
}


def run_pytest(src: Path, paths: list[str]) -> tuple[int, list[str]]:
    env = dict(os.environ, PYTHONPATH=str(src), TF_CPP_MIN_LOG_LEVEL="2")
    probe = subprocess.run(
        [sys.executable, "-c", "import toxic_service.scoring as s; print(s.__file__)"],
        env=env, capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    imported = Path(probe.stdout.strip())
    if imported != src / SCORING:
        raise SystemExit(f"pytest would import {imported}, not the copy {src / SCORING}: nothing would be tested")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *paths],
        env=env, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.MULTILINE)
    if proc.returncode not in (0, 1):  # 2-5: pytest itself could not run the tests
        raise SystemExit(f"pytest exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc.returncode, failed


def main(argv: list[str]) -> int:
    paths = argv or ["tests/unit/test_scoring.py"]
    original = (REPO / "app" / "src" / SCORING).read_text()
    survivors = []
    with tempfile.TemporaryDirectory(prefix="toxic-mutants-") as tmp:
        for name, (before, after) in {"(none: the code as it is)": ("", ""), **MUTANTS}.items():
            src = Path(tmp) / str(len(os.listdir(tmp)))
            shutil.copytree(REPO / "app" / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            if before:
                if original.count(before) != 1:
                    raise SystemExit(f"mutant {name!r}: {before!r} is not once in scoring.py; update this script")
                (src / SCORING).write_text(original.replace(before, after))
            code, failed = run_pytest(src, paths)
            if not before:
                if code != 0:
                    raise SystemExit(f"the unmutated code fails {failed}: fix that before judging mutants")
                print(f"baseline: {' '.join(paths)} pass")
                continue
            print(f"mutant {name!r}: " + (f"caught by {', '.join(failed)}" if failed else "SURVIVED"))
            if not failed:
                survivors.append(name)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
