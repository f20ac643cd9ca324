"""`train-stack`: one label of an existing bundle re-taught by a stack of a char n-gram LR and the model's logits.

Recipe (docs/models.md, "The stacked model"):
  (a) hashed char 1-5-gram TF-IDF (toxic_service.ngrams) -> logistic regression;
  (b) the bundle's own outputs as logits, scored through the serving path;
  stacker: logistic regression on the standardised out-of-fold (a) decision and (b).
Every choice (hash width, min_df, C of both regressions) is made by stratified
5-fold cross-validation on the training CSV only; the evaluation file is only
checked for overlap here (by text hash) and scored elsewhere, once.

scikit-learn (the `train` extra) is imported inside the functions: serving
never needs it; the bundle this writes is served by numpy and LiteRT alone.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toxic_service import ngrams
from toxic_service.auc import roc_auc
from toxic_service.bundle import (
    JIGSAW_LABELS,
    STACK_FILE,
    TFLITE_FILE,
    check_vocabulary,
    load_metadata,
    verify_model_file,
    write_bundle,
)
from toxic_service.importers import InputFileError
from toxic_service.stack import StackModel, stack_inputs
from toxic_service.training import read_jigsaw_csv

FOLDS = 5


@dataclass(frozen=True)
class StackConfig:
    base_bundle: Path
    vocab_path: Path
    csv_path: Path
    out_dir: Path
    label: str = "insult"
    exclude: tuple[Path, ...] = ()
    widths: tuple[int, ...] = (1 << 18, 1 << 20)
    min_dfs: tuple[int, ...] = (1, 2)
    ngram_cs: tuple[float, ...] = (1.0, 3.0, 10.0)
    stack_cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
    seed: int = 1337


@dataclass
class StackResult:
    n_train: int
    width: int
    min_df: int
    ngram_c: float
    stack_c: float
    ngram_cv_auc: float
    base_cv_auc: float  # the bundle's own label on the training CSV (no training involved)
    stack_cv_auc: float
    grid: list[dict[str, float]] = field(default_factory=list)
    stack_bytes: int = 0


def text_key(text: str) -> str:
    """The overlap hash: sha256 of the text with its whitespace runs collapsed (so re-wrapping does not hide a copy)."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8", "surrogatepass")).hexdigest()


def read_texts(path: Path) -> list[str]:
    """The comments of an evaluation file: a CSV with `comment_text` or `Comment`, or JSON {"texts": [...]}."""
    path = Path(path)
    try:
        if path.suffix == ".json":
            doc = json.loads(path.read_text(encoding="utf-8"))
            texts = doc.get("texts") if isinstance(doc, dict) else None
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise InputFileError(f"{path}: expected a JSON object with a list of strings under 'texts'")
            return texts
        csv.field_size_limit(sys.maxsize)
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            column = next((c for c in ("comment_text", "Comment") if c in (reader.fieldnames or [])), None)
            if column is None:
                raise InputFileError(f"{path}: no 'comment_text' (or 'Comment') column")
            return [row.get(column) or "" for row in reader]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise InputFileError(f"{path}: cannot read ({exc})") from exc


def refuse_overlap(train_texts: Sequence[str], csv_path: Path, exclude: Sequence[Path]) -> None:
    train_keys = {text_key(t) for t in train_texts}
    for path in exclude:
        shared = train_keys & {text_key(t) for t in read_texts(path)}
        if shared:
            raise InputFileError(
                f"{csv_path}: {len(shared)} comment(s) also in the evaluation file {path} (same text hash); "
                "remove them: a model trained on its test comments reports a score it has not earned"
            )


def base_scores(cfg: StackConfig, texts: Sequence[str], batch: int = 256) -> tuple[Any, np.ndarray]:
    """The base bundle's (n, n_labels) scores, through the serving Scorer (tokenizer, store, LiteRT)."""
    from toxic_service.runtime.litert import LiteRTRuntime
    from toxic_service.scoring import Scorer
    from toxic_service.vocab.sqlite import SqliteVocabularyStore

    meta = load_metadata(cfg.base_bundle)
    if meta.stack_label:
        raise InputFileError(f"{cfg.base_bundle}: already a stacked bundle; stack on the bundle it was built from")
    if cfg.label not in meta.labels:
        raise InputFileError(f"{cfg.base_bundle}: has no label {cfg.label!r} (labels: {', '.join(meta.labels)})")
    model_path = verify_model_file(cfg.base_bundle, meta, TFLITE_FILE)
    store = SqliteVocabularyStore(cfg.vocab_path)
    check_vocabulary(meta, store.info())
    scorer = Scorer(meta, store, lambda: LiteRTRuntime(model_path, num_threads=1))
    try:
        rows: list[list[float]] = []
        for start in range(0, len(texts), batch):
            chunk = scorer.score(list(texts[start : start + batch]))
            rows.extend([row[label] for label in meta.labels] for row in chunk)
    finally:
        scorer.close()
    return meta, np.asarray(rows, dtype=np.float64)


def _csr(features: ngrams.Features, width: int) -> Any:
    from scipy.sparse import csr_matrix

    return csr_matrix((features.values, features.ids, features.indptr), shape=(features.n_docs, width))


def _subset(counts: ngrams.Counts, rows: np.ndarray) -> ngrams.Counts:
    starts, ends = counts.indptr[rows], counts.indptr[rows + 1]
    take = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)]) if len(rows) else np.zeros(0, int)
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(ends - starts, out=indptr[1:])
    return ngrams.Counts(indptr=indptr, ids=counts.ids[take], tf=counts.tf[take])


def _fit_lr(x: Any, y: np.ndarray, c: float) -> Any:
    """L2 logistic regression (liblinear). Many more features than comments: the dual problem is the small one
    (same optimum, ~10x faster on the n-gram matrix); a handful of stacker inputs: the primal."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, solver="liblinear", dual=x.shape[1] > x.shape[0], max_iter=1000).fit(x, y)


def train_stack(cfg: StackConfig, log: Callable[[str], None] = print) -> StackResult:
    from sklearn.model_selection import StratifiedKFold

    data = read_jigsaw_csv(cfg.csv_path)
    if cfg.label not in data.present:
        raise InputFileError(f"{cfg.csv_path}: no '{cfg.label}' column (the label to stack)")
    y = data.labels[:, list(JIGSAW_LABELS).index(cfg.label)].astype(int)
    if y.min() == y.max():
        raise InputFileError(f"{cfg.csv_path}: '{cfg.label}' is {y[0]} in every row; both classes are needed")
    texts = data.texts
    refuse_overlap(texts, cfg.csv_path, cfg.exclude)
    if cfg.out_dir.exists() and any(cfg.out_dir.iterdir()):
        raise InputFileError(f"{cfg.out_dir}: exists and is not empty; choose a new --out")
    meta, base = base_scores(cfg, texts)
    label_index = meta.labels.index(cfg.label)
    folds = list(StratifiedKFold(FOLDS, shuffle=True, random_state=cfg.seed).split(np.zeros(len(y)), y))
    log(f"read {len(texts)} comments ({int(y.sum())} {cfg.label}); {FOLDS}-fold CV over the grid")

    grid: list[dict[str, float]] = []
    best: tuple[float, int, int, float, np.ndarray] | None = None
    for width in cfg.widths:
        counts = ngrams.count(texts, width)
        per_fold = [(_subset(counts, tr), _subset(counts, va)) for tr, va in folds]
        for min_df in cfg.min_dfs:
            prepared = []
            for c_tr, c_va in per_fold:
                idf = ngrams.fit_idf(c_tr, width, min_df)
                prepared.append((_csr(ngrams.transform(c_tr, idf), width), _csr(ngrams.transform(c_va, idf), width)))
            for c in cfg.ngram_cs:
                oof = np.zeros(len(y))
                for (x_tr, x_va), (tr, va) in zip(prepared, folds, strict=True):
                    oof[va] = _fit_lr(x_tr, y[tr], c).decision_function(x_va)
                auc = float(np.mean([roc_auc(y[va], oof[va]) for _, va in folds]))
                grid.append({"width": width, "min_df": min_df, "C": c, "cv_auc": auc})
                log(f"  width 2^{width.bit_length() - 1} min_df {min_df} C {c:g}: CV AUC {auc:.4f}")
                if best is None or auc > best[0]:
                    best = (auc, width, min_df, c, oof)
    assert best is not None
    ngram_auc, width, min_df, ngram_c, oof = best

    inputs = stack_inputs(oof, base)
    mean, std = inputs.mean(axis=0), inputs.std(axis=0)
    std[std == 0] = 1.0
    z = (inputs - mean) / std
    stack_grid = {}
    for c in cfg.stack_cs:
        s = np.zeros(len(y))
        for tr, va in folds:
            s[va] = _fit_lr(z[tr], y[tr], c).decision_function(z[va])
        stack_grid[c] = float(np.mean([roc_auc(y[va], s[va]) for _, va in folds]))
    stack_c = max(stack_grid, key=lambda c: stack_grid[c])
    log("  stacker C " + ", ".join(f"{c:g}: {a:.4f}" for c, a in stack_grid.items()))
    stacker = _fit_lr(z, y, stack_c)

    all_counts = ngrams.count(texts, width)
    idf = ngrams.fit_idf(all_counts, width, min_df)
    ngram_lr = _fit_lr(_csr(ngrams.transform(all_counts, idf), width), y, ngram_c)
    model = StackModel(
        idf=idf,
        ngram_coef=ngram_lr.coef_[0].astype(np.float32),
        ngram_intercept=float(ngram_lr.intercept_[0]),
        mean=mean,
        std=std,
        coef=stacker.coef_[0].astype(np.float64),
        intercept=float(stacker.intercept_[0]),
    )
    stack_bytes = model.to_bytes()
    others = [lab for lab in meta.labels if lab != cfg.label]
    sources = {lab: meta.label_sources.get(lab) or f"{meta.model_source} (unchanged)" for lab in others}
    sources[cfg.label] = (
        f"stack of a hashed char 1-5-gram LR trained on {cfg.csv_path.name} + the logits of {meta.model_source}"
    )
    new_meta = dataclasses.replace(
        meta,
        stack_label=cfg.label,
        label_sources=sources,
        model_source=f"{meta.model_source}; {cfg.label}: stacked on {cfg.csv_path.name} (toxic-service train-stack)",
        # The stack's weights are derived from the training CSV: its terms travel with them.
        model_licence=f"model: {meta.model_licence or 'unknown'}; {STACK_FILE}: from {cfg.csv_path.name} (check its terms)",
    )
    tflite = verify_model_file(cfg.base_bundle, meta, TFLITE_FILE).read_bytes()
    write_bundle(cfg.out_dir, tflite_bytes=tflite, stack_bytes=stack_bytes, metadata=new_meta)
    return StackResult(
        n_train=len(texts),
        width=width,
        min_df=min_df,
        ngram_c=ngram_c,
        stack_c=stack_c,
        ngram_cv_auc=ngram_auc,
        base_cv_auc=float(np.mean([roc_auc(y[va], base[va, label_index]) for _, va in folds])),
        stack_cv_auc=stack_grid[stack_c],
        grid=grid,
        stack_bytes=len(stack_bytes),
    )

