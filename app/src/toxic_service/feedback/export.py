"""The feedback store as a Jigsaw-format CSV that `toxic-service train` reads.

Columns: `id, comment_text`, then one 0/1 column per exported attribute, named
by the label the served bundle maps it to (its `perspective_attributes`, e.g.
TOXICITY -> toxic). A suggested probability becomes 1 when it is >= 0.5, else
0 (train reads only 0/1, and Perspective's own guidance reads a score as "the
fraction of raters who would call it toxic": 0.5 is the majority). An
attribute's value for the comment is its summary score, else the highest of
its span scores.

Jigsaw rows hold every label column, and train refuses an empty cell, so a row
lacking one exported attribute cannot be written: it is skipped and counted,
as are rows stored without their text (doNotStore). `--attribute` picks the
columns; the default is every attribute the bundle serves that any stored
suggestion with text carries. HTML comments are written without their markup
(the text the model scores).
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from toxic_service.feedback.store import Suggestion

# A suggested score is Perspective's: 0.5 and over means the suggester says yes (a training label of 1).
# This is the meaning of a suggestion, not the model's flag threshold (TOXIC_THRESHOLD_<LABEL>,
# settings.thresholds_for), so it stays 0.5 whatever thresholds the service flags at.
THRESHOLD = 0.5


def model_text(suggestion: Suggestion) -> str | None:
    """The text the model scores (HTML without markup), or None when it was not stored."""
    if suggestion.text is None:
        return None
    if suggestion.text_type == "HTML":
        from toxic_service.perspective.spans import strip_html

        return strip_html(suggestion.text).text.strip()  # block elements leave line breaks at the ends
    return suggestion.text


def to_label_value(value: float) -> int:
    return 1 if value >= THRESHOLD else 0


@dataclass
class ExportResult:
    path: Path
    columns: tuple[str, ...]
    rows: int = 0
    skipped_no_text: int = 0
    skipped_missing: Counter = field(default_factory=Counter)  # attribute -> rows lacking it
    unmapped: Counter = field(default_factory=Counter)  # attribute the bundle does not serve -> suggestions


class ExportError(ValueError):
    """The export cannot be written as asked (the message says which attribute or column)."""


def choose_attributes(
    suggestions: Sequence[Suggestion], mapping: Mapping[str, str], requested: Sequence[str] = ()
) -> tuple[str, ...]:
    """The attributes to export, in the bundle's order: `requested`, or every served one some stored text carries."""
    if requested:
        unknown = [name for name in requested if name not in mapping]
        if unknown:
            raise ExportError(
                f"--attribute {', '.join(unknown)}: not served by this bundle; it serves {', '.join(mapping) or 'none'}"
            )
        return tuple(name for name in mapping if name in requested)
    present = {a.attribute for s in suggestions if s.text is not None for a in s.attributes}
    return tuple(name for name in mapping if name in present)


def export_csv(
    suggestions: Iterable[Suggestion], mapping: Mapping[str, str], out: Path, requested: Sequence[str] = ()
) -> ExportResult:
    """Write the CSV atomically (a temporary file renamed over `out`); the counts of what was left out."""
    suggestions = list(suggestions)
    attributes = choose_attributes(suggestions, mapping, requested)
    if not attributes:
        raise ExportError(
            "no stored suggestion with text carries an attribute this bundle serves "
            f"({', '.join(mapping) or 'none'}): nothing to export"
        )
    columns = tuple(mapping[name] for name in attributes)
    result = ExportResult(path=Path(out), columns=("id", "comment_text", *columns))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(result.columns)
            for suggestion in suggestions:
                values = {a.attribute: a.comment_value for a in suggestion.attributes}
                for name in values:
                    if name not in mapping:
                        result.unmapped[name] += 1
                text = model_text(suggestion)
                if text is None:
                    result.skipped_no_text += 1
                    continue
                missing = [name for name in attributes if name not in values]
                if missing:
                    result.skipped_missing.update(missing)
                    continue
                writer.writerow([f"feedback-{suggestion.id}", text, *(to_label_value(values[n]) for n in attributes)])
                result.rows += 1
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return result
