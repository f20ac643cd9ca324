"""Run tests against mutants of the app's code, each in a copy of app/src, and say which test fails.

    .venv/bin/python tests/mutate.py scoring|training [pytest paths...]

Why: the order-blind fixture model once let a scorer that reversed words or dropped repeats pass every
test, and train's test asserted only 0 <= AUC <= 1 (issue 10). Each mutant below is a bug a test must
catch; this script applies it to a copy (the repository's own files are never touched), checks that
pytest imports the copy, and exits 1 when a mutant survives or when the unmutated copy does not pass.
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
TOKENIZED = "tokenized = [tokenize(text, meta.tokenizer) for text in texts]"
PADDED = "return pad([encode(words, mapping, meta) for words in tokenized], meta.max_len, meta.pad_index)"
POST_PADDED = """rows = [encode(words, mapping, meta)[-meta.max_len :] for words in tokenized]
        import numpy as np

        out = np.full((len(rows), meta.max_len), meta.pad_index, dtype=np.int32)
        for r, seq in enumerate(rows):
            out[r, : len(seq)] = seq
        return out"""

# name -> (text in the file, its replacement)
SCORING_MUTANTS = {
    "reverse each text's words": (TOKENIZED, "tokenized = [tokenize(text, meta.tokenizer)[::-1] for text in texts]"),
    "drop repeated words": (TOKENIZED, "tokenized = [list(dict.fromkeys(tokenize(text, meta.tokenizer))) for text in texts]"),
    "post-pad instead of pre-pad": (PADDED, POST_PADDED),
    "keep the first max_len words, not the last": (
        PADDED,
        "return pad([encode(words, mapping, meta)[: meta.max_len] for words in tokenized], meta.max_len, meta.pad_index)",
    ),
}
AUC = "auc[label] = roc_auc(y, scores[:, j])"
TRAINING_MUTANTS = {
    "AUC of inverted scores": (AUC, "auc[label] = roc_auc(y, 1 - scores[:, j])"),
    "held-out labels paired with the wrong rows' scores": (
        "y = data.labels[hold_idx, j]",
        "y = np.roll(data.labels[hold_idx, j], 1)",
    ),
    "held-out rows trained on too": (
        "return np.sort(order[n_hold:]), np.sort(order[:n_hold])",
        "return np.sort(order), np.sort(order[:n_hold])",
    ),
}
# suite -> (file under app/src, its mutants, the tests run by default)
SUITES = {
    "scoring": (Path("toxic_service") / "scoring.py", SCORING_MUTANTS, ["tests/unit/test_scoring.py"]),
    "training": (Path("toxic_service") / "training.py", TRAINING_MUTANTS, ["tests/unit/test_train.py"]),
}


def run_pytest(src: Path, target: Path, paths: list[str]) -> tuple[int, list[str]]:
    env = dict(os.environ, PYTHONPATH=str(src), TF_CPP_MIN_LOG_LEVEL="2")
    probe = subprocess.run(
        [sys.executable, "-c", f"import {'.'.join(target.with_suffix('').parts)} as m; print(m.__file__)"],
        env=env, capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    imported = Path(probe.stdout.strip())
    if imported != src / target:
        raise SystemExit(f"pytest would import {imported}, not the copy {src / target}: nothing would be tested")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *paths],
        env=env, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.MULTILINE)
    if proc.returncode not in (0, 1):  # 2-5: pytest itself could not run the tests
        raise SystemExit(f"pytest exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc.returncode, failed


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SUITES:
        raise SystemExit(f"usage: mutate.py {'|'.join(SUITES)} [pytest paths...]")
    target, mutants, default_paths = SUITES[argv[0]]
    paths = argv[1:] or default_paths
    original = (REPO / "app" / "src" / target).read_text()
    survivors = []
    with tempfile.TemporaryDirectory(prefix="toxic-mutants-") as tmp:
        for name, (before, after) in {"(none: the code as it is)": ("", ""), **mutants}.items():
            src = Path(tmp) / str(len(os.listdir(tmp)))
            shutil.copytree(REPO / "app" / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            if before:
                if original.count(before) != 1:
                    raise SystemExit(f"mutant {name!r}: {before!r} is not once in {target}; update this script")
                (src / target).write_text(original.replace(before, after))
            code, failed = run_pytest(src, target, paths)
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
