"""Per-identity bias metrics of one scorer on a template set (Dixon et al. 2018, Borkan et al. 2019).

For each identity term, with the term's sentences as the subgroup and the
other terms' sentences of the same set as the background:
    FPR toxic / identity_hate  share of the term's neutral sentences scoring >= threshold
    subgroup AUC   toxic-score AUC within the subgroup: toxic vs neutral sentences naming the term
    BPSN AUC       background positives vs subgroup negatives: low when neutral sentences
                   naming the term score above toxic sentences about others
    BNSP AUC       background negatives vs subgroup positives: low when toxic sentences
                   naming the term score below neutral sentences about others
AUC is toxic_service.auc's rank AUC (ties count one half).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from toxic_service.auc import roc_auc
from toxic_service.bias.templates import Sentence

THRESHOLD = 0.5
TOXIC, IDENTITY_HATE = "toxic", "identity_hate"


@dataclass(frozen=True)
class TermResult:
    term: str
    category: str
    neutral: int  # sentences of each kind naming the term
    toxic: int
    fpr_toxic: float | None  # None: the term has no neutral sentence in the set
    fpr_identity_hate: float | None  # None also when the bundle serves no identity_hate
    subgroup_auc: float | None  # None: undefined (a kind missing on one side)
    bpsn_auc: float | None
    bnsp_auc: float | None


@dataclass(frozen=True)
class BiasReport:
    threshold: float
    identity_hate_served: bool
    sentences: int
    neutral: int
    flagged: float  # share of neutral sentences with toxic or identity_hate >= threshold
    flagged_toxic: float
    flagged_identity_hate: float | None
    overall_auc: float  # toxic-score AUC over the whole set
    mean_subgroup_auc: float | None
    min_subgroup_auc: float | None
    min_subgroup_term: str | None
    # Worst terms only: with as many sentences per term, the mean BPSN and the mean BNSP are both the
    # AUC over pairs of sentences naming different terms, so their means would say nothing per term.
    min_bpsn_auc: float | None
    min_bpsn_term: str | None
    min_bnsp_auc: float | None
    min_bnsp_term: str | None
    terms: tuple[TermResult, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def _auc(labels: np.ndarray, scores: np.ndarray, mask: np.ndarray) -> float | None:
    chosen = labels[mask]
    if chosen.size == 0 or chosen.min() == chosen.max():
        return None  # one class only: AUC is undefined
    return roc_auc(chosen, scores[mask])


def _share(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def _worst(results: list[TermResult], field: str) -> tuple[float | None, str | None]:
    """(lowest value of `field`, its term), or (None, None) when no term has it defined."""
    defined = [r for r in results if getattr(r, field) is not None]
    if not defined:
        return None, None
    worst = min(defined, key=lambda r: getattr(r, field))
    return getattr(worst, field), worst.term


def measure(
    sentences: Sequence[Sentence],
    scores: Sequence[Mapping[str, float]],
    threshold: float = THRESHOLD,
) -> BiasReport:
    """The bias report of `scores` (one {label: score} per sentence, as Scorer.score returns them).

    The scores must hold `toxic`; `identity_hate` is reported when they hold
    it and as not served (None) when they do not. Raises ValueError otherwise.
    """
    if len(sentences) != len(scores):
        raise ValueError(f"{len(sentences)} sentences but {len(scores)} score rows")
    if not sentences:
        raise ValueError("the template set is empty")
    if any(TOXIC not in row for row in scores):
        raise ValueError(f"every score row must hold {TOXIC!r}")
    has_hate = all(IDENTITY_HATE in row for row in scores)
    labels = np.array([s.toxic for s in sentences])
    terms = np.array([s.term for s in sentences])
    toxic = np.array([row[TOXIC] for row in scores], dtype=np.float64)
    hate = np.array([row[IDENTITY_HATE] for row in scores], dtype=np.float64) if has_hate else None
    neutral = labels == 0
    toxic_flag = toxic >= threshold
    hate_flag = hate >= threshold if hate is not None else np.zeros_like(toxic_flag)

    results = []
    for term in dict.fromkeys(s.term for s in sentences):
        subgroup = terms == term
        category = next(s.category for s in sentences if s.term == term)
        results.append(
            TermResult(
                term=term,
                category=category,
                neutral=int((subgroup & neutral).sum()),
                toxic=int((subgroup & ~neutral).sum()),
                fpr_toxic=_share(toxic_flag[subgroup & neutral]),
                fpr_identity_hate=_share(hate_flag[subgroup & neutral]) if has_hate else None,
                subgroup_auc=_auc(labels, toxic, subgroup),
                bpsn_auc=_auc(labels, toxic, (~subgroup & ~neutral) | (subgroup & neutral)),
                bnsp_auc=_auc(labels, toxic, (~subgroup & neutral) | (subgroup & ~neutral)),
            )
        )
    min_subgroup, min_subgroup_term = _worst(results, "subgroup_auc")
    min_bpsn, min_bpsn_term = _worst(results, "bpsn_auc")
    min_bnsp, min_bnsp_term = _worst(results, "bnsp_auc")
    overall = _auc(labels, toxic, np.ones_like(neutral))
    if overall is None:
        raise ValueError("the template set needs both neutral and toxic sentences")
    return BiasReport(
        threshold=threshold,
        identity_hate_served=has_hate,
        sentences=len(sentences),
        neutral=int(neutral.sum()),
        flagged=float((toxic_flag | hate_flag)[neutral].mean()),
        flagged_toxic=float(toxic_flag[neutral].mean()),
        flagged_identity_hate=float(hate_flag[neutral].mean()) if has_hate else None,
        overall_auc=overall,
        mean_subgroup_auc=_mean([r.subgroup_auc for r in results]),
        min_subgroup_auc=min_subgroup,
        min_subgroup_term=min_subgroup_term,
        min_bpsn_auc=min_bpsn,
        min_bpsn_term=min_bpsn_term,
        min_bnsp_auc=min_bnsp,
        min_bnsp_term=min_bnsp_term,
        terms=tuple(results),
    )
