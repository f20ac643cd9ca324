"""What the feedback store holds, and how the current model agrees with it.

Counts: suggestions per attribute (and how many of them say yes, >= 0.5) and
per community. Agreement, per attribute the served bundle maps to a label it
learned: over the stored texts, the fraction where the model flags the label as
the service does and the suggester says the same, i.e. (score >= the label's
threshold in force, settings.thresholds_for) == (suggested >= 0.5, what a
suggested score means: export.THRESHOLD). Texts stored without their text
(doNotStore) cannot be scored and are counted apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from toxic_service.feedback.export import THRESHOLD, model_text
from toxic_service.feedback.store import Suggestion


@dataclass
class Agreement:
    label: str
    compared: int = 0
    agreed: int = 0

    @property
    def fraction(self) -> float | None:
        return self.agreed / self.compared if self.compared else None


@dataclass
class FeedbackStats:
    suggestions: int = 0
    without_text: int = 0
    per_attribute: Counter = field(default_factory=Counter)
    yes_per_attribute: Counter = field(default_factory=Counter)
    per_community: Counter = field(default_factory=Counter)
    agreement: dict[str, Agreement] = field(default_factory=dict)
    agreement_note: str = ""
    # The model's threshold per compared label: the service's (settings.thresholds_for), set by add_agreement.
    model_thresholds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "suggestions": self.suggestions,
            "without_text": self.without_text,
            "attributes": {
                name: {"suggestions": n, "yes": self.yes_per_attribute[name]} for name, n in sorted(self.per_attribute.items())
            },
            "communities": dict(sorted(self.per_community.items())),
            "threshold": THRESHOLD,
            "model_thresholds": dict(self.model_thresholds),
            "agreement": {
                name: {"label": a.label, "compared": a.compared, "agreed": a.agreed, "fraction": a.fraction}
                for name, a in self.agreement.items()
            },
            "agreement_note": self.agreement_note,
        }


NO_COMMUNITY = "(none)"


def count(suggestions: Sequence[Suggestion]) -> FeedbackStats:
    stats = FeedbackStats(suggestions=len(suggestions))
    for suggestion in suggestions:
        stats.per_community[suggestion.community_id or NO_COMMUNITY] += 1
        if suggestion.text is None:
            stats.without_text += 1
        for item in suggestion.attributes:
            stats.per_attribute[item.attribute] += 1
            stats.yes_per_attribute[item.attribute] += item.comment_value >= THRESHOLD
    return stats


def add_agreement(
    stats: FeedbackStats,
    suggestions: Sequence[Suggestion],
    mapping: Mapping[str, str],
    trained: Sequence[str],
    score: Callable[[list[str]], list[dict[str, float]]],
    thresholds: Mapping[str, float],
    batch: int = 64,
) -> None:
    """Score every stored text once (in batches) and compare, per attribute mapped to a trained label.

    `thresholds` are the ones the service flags at (settings.thresholds_for of the bundle), so the
    agreement is that of the service's `flags`, not of a fixed 0.5.
    """
    scorable = [(s, text) for s in suggestions if (text := model_text(s)) is not None]
    for start in range(0, len(scorable), batch):
        chunk = scorable[start : start + batch]
        for (suggestion, _), scores in zip(chunk, score([text for _, text in chunk]), strict=True):
            for item in suggestion.attributes:
                label = mapping.get(item.attribute)
                if label is None or label not in trained:
                    continue
                agreement = stats.agreement.setdefault(item.attribute, Agreement(label))
                agreement.compared += 1
                stats.model_thresholds[label] = thresholds[label]
                agreement.agreed += (scores[label] >= thresholds[label]) == (item.comment_value >= THRESHOLD)
    unserved = sorted(set(stats.per_attribute) - set(stats.agreement))
    if unserved:
        stats.agreement_note = f"not compared (the model does not serve them, or no stored text): {', '.join(unserved)}"
