"""The identity-template rows a bias mitigation may train on: the `mitigation` half only, never `evaluation`.

`training_sentences()` is the one way stack training gets template rows. It
takes the mitigation half and checks every sentence's text hash against the
evaluation half's: a sentence that reads like an evaluation sentence (the same
text after whitespace is collapsed) is refused, so that a later change of the
templates or of the split cannot leak the sentences the bias figures are
measured on into training.

Cross-validation inside the mitigation half splits it again by template id
(`template_fold`): a held-out fold's templates are wordings the fit never saw,
as the evaluation half's are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from toxic_service.bias.templates import EVALUATION, MITIGATION, Sentence, sentences

FOLDS = 3


def text_key(text: str) -> str:
    """sha256 of the text with its whitespace runs collapsed (stack_training.text_key: the same hash)."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8", "surrogatepass")).hexdigest()


def evaluation_keys() -> set[str]:
    return {text_key(s.text) for s in sentences(EVALUATION)}


def refuse_evaluation(rows: Sequence[Sentence]) -> list[Sentence]:
    """`rows` unchanged, or ValueError when one of them is (by text hash) an evaluation-half sentence."""
    held_out = evaluation_keys()
    leaked = [s for s in rows if text_key(s.text) in held_out]
    if leaked:
        raise ValueError(
            f"{len(leaked)} template sentence(s) to train on are evaluation-half sentences (same text hash), "
            f"e.g. {leaked[0].text!r}: the bias figures would be measured on training data"
        )
    return list(rows)


def training_sentences() -> list[Sentence]:
    """The mitigation half, checked against the evaluation half by text hash."""
    return refuse_evaluation(sentences(MITIGATION))


def template_fold(template_id: int) -> int:
    """CV fold of a mitigation template: with even ids 0-10 neutral and 12-22 toxic, each of the 3 folds
    holds 2 neutral and 2 toxic templates (every term in each)."""
    return (template_id // 2) % FOLDS
