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
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toxic_service import ngrams
from toxic_service.auc import roc_auc
from toxic_service.bias import mitigation
from toxic_service.bias.mitigation import text_key  # the overlap hash (whitespace runs collapsed)
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
from toxic_service.stack import StackModel, logits, stack_inputs
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
    # Labels to de-bias (distilled from the model + identity templates of the mitigation half), and the
    # unlabelled comment files (besides the training CSV's) they are distilled on.
    mitigate: tuple[str, ...] = ()
    distil: tuple[Path, ...] = ()
    template_weights: tuple[float, ...] = (3.0, 10.0, 30.0)
    mitigation_cs: tuple[float, ...] = (1.0,)
    # Labels whose toxic templates are taught the model's own score, not 1 (see train_mitigation).
    model_on_toxic_templates: tuple[str, ...] = ("identity_hate",)


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
    mitigation: list[MitigationResult] = field(default_factory=list)


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
    if meta.stack_labels:
        raise InputFileError(f"{cfg.base_bundle}: already a stacked bundle; stack on the bundle it was built from")
    for label in (cfg.label, *cfg.mitigate):
        if label not in meta.labels:
            raise InputFileError(f"{cfg.base_bundle}: has no label {label!r} (labels: {', '.join(meta.labels)})")
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
    if cfg.label in cfg.mitigate or len(set(cfg.mitigate)) != len(cfg.mitigate):
        raise InputFileError(f"--mitigate: {', '.join(cfg.mitigate)}: distinct labels other than --label {cfg.label}")
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
    rows = [
        StackModel(
            idf=idf,
            ngram_coef=ngram_lr.coef_[0].astype(np.float32),
            ngram_intercept=np.array([float(ngram_lr.intercept_[0])]),
            mean=mean,
            std=std,
            coef=stacker.coef_[0].astype(np.float64),
            intercept=np.array([float(stacker.intercept_[0])]),
        )
    ]
    mitigated: list[MitigationResult] = []
    if cfg.mitigate:
        log(f"mitigating {', '.join(cfg.mitigate)}: distilled from the base model + identity templates (mitigation half)")
        distil = distillation_texts(cfg, texts, log)
        scored = {text_key(t): row for t, row in zip(texts, base, strict=True)}
        extra = [t for t in distil if text_key(t) not in scored]
        _, extra_base = base_scores(cfg, extra) if extra else (None, np.zeros((0, len(meta.labels))))
        scored.update({text_key(t): row for t, row in zip(extra, extra_base, strict=True)})
        distil_base = np.array([scored[text_key(t)] for t in distil])
        more, mitigated = train_mitigation(cfg, meta, distil, distil_base, width, min_df, log)
        rows.extend(more)
    # One row per stacked label (StackModel holds every array as (1, ...) rows for one label): stack them.
    model = StackModel(**{f.name: np.concatenate([getattr(r, f.name) for r in rows]) for f in dataclasses.fields(StackModel)})
    stack_bytes = model.to_bytes()
    stacked = (cfg.label, *cfg.mitigate)
    others = [lab for lab in meta.labels if lab not in stacked]
    sources = {lab: meta.label_sources.get(lab) or f"{meta.model_source} (unchanged)" for lab in others}
    sources[cfg.label] = (
        f"stack of a hashed char 1-5-gram LR trained on {cfg.csv_path.name} + the logits of {meta.model_source}"
    )
    distilled_on = ", ".join([cfg.csv_path.name, *(p.name for p in cfg.distil)])
    for result in mitigated:
        sources[result.label] = (
            f"{meta.model_source} distilled (on {distilled_on}) + identity templates (mitigation half, "
            f"template weight {result.template_weight:g}): char 1-5-gram TF-IDF + the model's logits"
        )
    new_meta = dataclasses.replace(
        meta,
        stack_labels=stacked,
        label_sources=sources,
        model_source=f"{meta.model_source}; {cfg.label}: stacked on {cfg.csv_path.name}"
        + (f"; {', '.join(cfg.mitigate)}: bias-mitigated" if cfg.mitigate else "")
        + " (toxic-service train-stack)",
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
        mitigation=mitigated,
    )



# --- Bias mitigation of labels the training CSV does not teach (toxic, identity_hate) -------------------------
#
# One logistic regression per label on [the text's char n-gram TF-IDF, the model's standardised logits],
# fitted to (a) the model's own probability on real comments (soft targets: cross-entropy against p) and
# (b) the template label (neutral 0, toxic 1) of the mitigation half's sentences, each with weight
# `template_weight` (a comment weighs 1). (a) keeps the label where the model already is on real text; (b)
# teaches the n-gram weights of identity words to cancel what the model wrongly adds for them. Only the
# n-grams of the fitted templates are features (idf 0 elsewhere): the correction is where the templates
# give evidence, and a comment without those n-grams keeps the model's score but for the logit weights.
# The fit is exactly a StackModel row: the n-gram part is its n-gram LR (intercept 0), the stacker's inputs
# are [that decision, the logits] with mean [0, m] and std [1, sd]. The L2 penalty (1/2 |w|^2 against C
# times the thousands of comments' weights) barely pulls on the few logit weights: it shrinks the n-grams'.

# Per label at 0.5 on held-out mitigation templates: toxic and identity_hate each at most half of the
# issue's 5 % for the two together, and subgroup AUC (toxic) at least the 0.95.
FLAG_TARGET = 0.025
SUBGROUP_AUC_TARGET = 0.95
MITIGATION_ITERATIONS = 1000


@dataclass
class MitigationResult:
    label: str
    template_weight: float
    c: float
    met_targets_in_cv: bool
    n_comments: int
    n_templates: int
    grid: list[dict[str, float | None]] = field(default_factory=list)


def distillation_texts(cfg: StackConfig, train_texts: Sequence[str], log: Callable[[str], None]) -> list[str]:
    """The real comments to distil on: the training CSV's and the --distil files', without any comment of an
    --exclude file (dropped by text hash: final.csv repeats some test comments) and without repeats."""
    excluded = {text_key(t) for path in cfg.exclude for t in read_texts(path)}
    seen: set[str] = set()
    out: list[str] = []
    dropped = 0
    for text in [*train_texts, *(t for path in cfg.distil for t in read_texts(path))]:
        key = text_key(text)
        if key in excluded:
            dropped += 1
        elif key not in seen:
            seen.add(key)
            out.append(text)
    log(f"distillation set: {len(out)} distinct comments ({dropped} dropped as in an --exclude file)")
    return out


def _matrix(counts: ngrams.Counts, idf: np.ndarray, columns: np.ndarray, z_logits: np.ndarray) -> Any:
    """[TF-IDF restricted to `columns` (the ids where idf is not 0, renumbered 0..d-1), logits] as CSR."""
    from scipy.sparse import csr_matrix, hstack

    feats = ngrams.transform(counts, idf)
    lookup = np.full(len(idf), -1, dtype=np.int64)
    lookup[columns] = np.arange(len(columns))
    x = csr_matrix((feats.values, lookup[feats.ids], feats.indptr), shape=(feats.n_docs, len(columns)))
    return hstack([x, csr_matrix(z_logits)], format="csr")


def _fit_soft_lr(x: Any, y: np.ndarray, w: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """L2 logistic regression on soft targets y in [0, 1] with sample weights: min 1/2 |coef|^2 +
    C sum w (log(1 + e^z) - y z), z = x coef + b (b not penalised). L-BFGS from scipy: scikit-learn's
    LogisticRegression takes only hard labels (soft ones as two weighted copies: twice the rows)."""
    from scipy.optimize import minimize

    d = x.shape[1]
    xt = x.T.tocsr()

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        coef, b = theta[:d], theta[d]
        z = x @ coef + b
        loss = c * float(np.sum(w * (np.logaddexp(0.0, z) - y * z))) + 0.5 * float(coef @ coef)
        r = c * w * (1.0 / (1.0 + np.exp(-z)) - y)
        return loss, np.concatenate([xt @ r + coef, [r.sum()]])

    opt = minimize(objective, np.zeros(d + 1), jac=True, method="L-BFGS-B", options={"maxiter": MITIGATION_ITERATIONS})
    return opt.x[:d], float(opt.x[d])


def _template_figures(rows: Sequence[Any], scores: np.ndarray) -> tuple[float, float | None]:
    """(share of neutral sentences >= 0.5, lowest per-term AUC) of held-out template scores."""
    labels = np.array([s.toxic for s in rows])
    terms = np.array([s.term for s in rows])
    flagged = float((scores[labels == 0] >= 0.5).mean())
    aucs = [roc_auc(labels[terms == t], scores[terms == t]) for t in dict.fromkeys(terms.tolist())]
    return flagged, (min(aucs) if aucs else None)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def train_mitigation(
    cfg: StackConfig,
    meta: Any,
    texts: Sequence[str],
    base: np.ndarray,
    width: int,
    min_df: int,
    log: Callable[[str], None],
) -> tuple[list[StackModel], list[MitigationResult]]:
    """One StackModel row per label of cfg.mitigate, its template weight chosen by CV on the mitigation half.

    `texts` are real comments and `base` the model's (n, n_labels) scores for them."""
    templates = mitigation.training_sentences()
    t_texts = [s.text for s in templates]
    y_tmpl = np.array([s.toxic for s in templates], dtype=float)
    t_fold = np.array([mitigation.template_fold(s.template_id) for s in templates])
    _, t_base = base_scores(cfg, t_texts)
    real_fold = np.random.default_rng(cfg.seed).permutation(len(texts)) % mitigation.FOLDS

    real_counts, t_counts = ngrams.count(texts, width), ngrams.count(t_texts, width)
    real_logits, t_logits = logits(base), logits(t_base)
    m, sd = real_logits.mean(axis=0), real_logits.std(axis=0)
    sd[sd == 0] = 1.0
    z_real, z_tmpl = (real_logits - m) / sd, (t_logits - m) / sd

    def prepared(real_rows: np.ndarray, tmpl_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
        """(idf, its columns, the fit's [comments; templates] matrix) from the rows being fitted only: a
        held-out template's unseen n-grams are dropped, as the evaluation half's are at serving."""
        r, t = _subset(real_counts, real_rows), _subset(t_counts, tmpl_rows)
        joined = ngrams.Counts(
            indptr=np.concatenate([r.indptr, r.indptr[-1] + t.indptr[1:]]),
            ids=np.concatenate([r.ids, t.ids]),
            tf=np.concatenate([r.tf, t.tf]),
        )
        idf = ngrams.fit_idf(joined, width, min_df)
        in_templates = np.zeros(width, dtype=bool)
        in_templates[t.ids] = True
        idf[~in_templates] = 0.0
        columns = np.flatnonzero(idf)
        z = np.vstack([z_real[real_rows], z_tmpl[tmpl_rows]])
        return idf, columns, _matrix(joined, idf, columns, z)

    models, results = [], []
    for label in cfg.mitigate:
        j = meta.labels.index(label)
        p_real = base[:, j]
        # Neutral templates are taught 0. Toxic ones are taught 1, or, for a label in cfg.model_on_toxic_templates,
        # the model's own score: then the mitigation only removes false positives. identity_hate is such a label:
        # most toxic templates are insults ("you stupid X idiot") that the model scores low for identity_hate;
        # teaching them 1 taught "idiot" and "stupid" identity_hate and moved real comments' identity_hate by up
        # to 0.96 (p99 0.28 on the insults test texts, against 0.07 this way); docs/models.md has the figures.
        y_label = np.where(y_tmpl == 1, t_base[:, j], 0.0) if label in cfg.model_on_toxic_templates else y_tmpl

        def fit(
            real_rows: np.ndarray, tmpl_rows: np.ndarray, weight: float, c: float,
            p_real: np.ndarray = p_real, y_label: np.ndarray = y_label,
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
            idf, columns, x = prepared(real_rows, tmpl_rows)
            y = np.concatenate([p_real[real_rows], y_label[tmpl_rows]])
            w = np.concatenate([np.ones(len(real_rows)), np.full(len(tmpl_rows), weight)])
            coef, b = _fit_soft_lr(x, y, w, c)
            return idf, columns, coef, b

        grid: list[dict[str, float | None]] = []
        for c, weight in ((c, w) for c in cfg.mitigation_cs for w in cfg.template_weights):
            # Out-of-fold template scores, pooled over the folds: each term's AUC then ranks its 6 + 6 held-out
            # sentences at once, as the evaluation half's are ranked.
            oof_t, oof_r = np.zeros(len(templates)), np.zeros(len(texts))
            for k in range(mitigation.FOLDS):
                r_tr, r_va = np.flatnonzero(real_fold != k), np.flatnonzero(real_fold == k)
                t_tr, t_va = np.flatnonzero(t_fold != k), np.flatnonzero(t_fold == k)
                idf, columns, coef, b = fit(r_tr, t_tr, weight, c)
                oof_t[t_va] = _sigmoid(_matrix(_subset(t_counts, t_va), idf, columns, z_tmpl[t_va]) @ coef + b)
                oof_r[r_va] = _sigmoid(_matrix(_subset(real_counts, r_va), idf, columns, z_real[r_va]) @ coef + b)
            flagged, low = _template_figures(templates, oof_t)
            gap = np.abs(oof_r - p_real)
            row: dict[str, float | None] = {
                "C": c,
                "template_weight": weight,
                "cv_flagged": flagged,
                "cv_min_term_auc": low,
                "cv_mean_abs_diff": float(gap.mean()),
                "cv_p99_abs_diff": float(np.percentile(gap, 99)),
            }
            grid.append(row)
            low_auc = "-" if row["cv_min_term_auc"] is None else f"{row['cv_min_term_auc']:.3f}"
            log(
                f"  {label} C {c:g} template weight {weight:g}: CV neutral flagged {row['cv_flagged']:.1%}, "
                f"min term AUC {low_auc}, |new - base| on held-out comments mean {row['cv_mean_abs_diff']:.4f} "
                f"p99 {row['cv_p99_abs_diff']:.4f}"
            )

        def meets(row: dict[str, float | None], label: str = label) -> bool:
            auc_ok = label != "toxic" or (row["cv_min_term_auc"] or 0.0) >= SUBGROUP_AUC_TARGET
            return float(row["cv_flagged"] or 0.0) <= FLAG_TARGET and auc_ok

        # Of the settings that meet the targets, the one closest to the model on held-out real comments; else,
        # of those whose subgroup AUC holds, the least flagged; else the least flagged.
        passing = [row for row in grid if meets(row)]
        auc_ok = [row for row in grid if label != "toxic" or (row["cv_min_term_auc"] or 0.0) >= SUBGROUP_AUC_TARGET]
        if passing:
            chosen = min(passing, key=lambda r: r["cv_mean_abs_diff"] or 0.0)
        else:
            chosen = min(auc_ok or grid, key=lambda r: r["cv_flagged"] or 0.0)
        weight, c = float(chosen["template_weight"] or 0.0), float(chosen["C"] or 0.0)
        log(f"  {label}: C {c:g}, template weight {weight:g}" + ("" if passing else " (no setting met the targets in CV)"))

        idf, columns, coef, b = fit(np.arange(len(texts)), np.arange(len(templates)), weight, c)
        ngram_coef = np.zeros(width, dtype=np.float32)
        ngram_coef[columns] = coef[: len(columns)]
        models.append(
            StackModel(
                idf=idf,
                ngram_coef=ngram_coef,
                ngram_intercept=np.zeros(1),
                mean=np.concatenate([[0.0], m]),
                std=np.concatenate([[1.0], sd]),
                coef=np.concatenate([[1.0], coef[len(columns) :]]),
                intercept=np.array([b]),
            )
        )
        results.append(MitigationResult(label, weight, c, bool(passing), len(texts), len(templates), grid))
    return models, results
