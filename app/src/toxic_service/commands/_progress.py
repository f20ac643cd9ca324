"""Progress bars for long CLI work (tqdm, on stderr so stdout stays parseable)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_bar(
    description: str, total: int | None = None, unit: str = "words", delay: float = 0.0
) -> Iterator[Any]:
    """`delay`: seconds before the bar first shows, so work that ends sooner prints nothing."""
    from tqdm import tqdm

    with tqdm(
        total=total, desc=description, unit=unit, unit_scale=True, mininterval=1.0, leave=True, delay=delay
    ) as bar:
        yield bar
