"""Sentences, HTML without markup, and offsets in UTF-16 code units, as Perspective counts them.

A comment becomes a `Prepared`: the text the model scores (for HTML: the
text without markup, entities decoded), its sentences as [start, end) in that
text, and a map from each of its characters back into the ORIGINAL string,
so that every span's `begin`/`end` points into what the client sent.

Sentence rule (a small regex splitter, no language model): a sentence ends
  - after a run of . ! ? … (and any closing quotes or brackets right after it)
    that is followed by whitespace or the end of the text;
  - right after 。 ！ ？ ｡ (CJK full stops need no space after them);
  - at a line break (a blank line, a <br>, or the end of a block element in HTML).
Whitespace around a sentence is not part of its span; a text with no sentence
end is one sentence. Abbreviations ("e.g. this") split too: the rule is simple
on purpose, and the whole comment's score never depends on it.

Offsets: Perspective's `begin`/`end` count UTF-16 code units, end exclusive
(what JavaScript's String.length counts): a character outside the Basic
Multilingual Plane (most emoji) is 2, every other character 1; a combining mark
is its own character and never starts a span (spans start at a non-space
character after a sentence end and end after the sentence's last character).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from html import unescape
from html.parser import HTMLParser
from itertools import accumulate
from typing import Any

_SENTENCE_END = re.compile(
    r"""[.!?\u2026]+["'\u201d\u2019)\]]*(?=\s|$)   # Western: punctuation then space or the end
      | [\u3002\uff01\uff1f\uff61]+["'\u300d\u300f\uff09)\]]*   # CJK full stops: no space needed
      | \n\s*\n | \n                                # line breaks
    """,
    re.VERBOSE,
)


def sentence_bounds(text: str) -> list[tuple[int, int]]:
    """[start, end) of each sentence of `text` (code point indexes), whitespace trimmed, empty ones dropped."""
    bounds: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        _add_trimmed(text, start, match.end(), bounds)
        start = match.end()
    _add_trimmed(text, start, len(text), bounds)
    return bounds


def _add_trimmed(text: str, start: int, end: int, out: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        out.append((start, end))


def utf16_offsets(text: str) -> list[int]:
    """offsets[i] = UTF-16 code units before code point i of `text` (len(text) + 1 entries)."""
    return [0, *accumulate(2 if ord(ch) > 0xFFFF else 1 for ch in text)]


@dataclass(frozen=True)
class Prepared:
    text: str  # what the model scores
    origin_start: Sequence[int]  # per character of `text`: where it starts in the original string
    origin_end: Sequence[int]  # ... and where it ends (an entity maps all its characters to the whole entity)
    original: str

    @cached_property
    def _units(self) -> list[int]:
        return utf16_offsets(self.original)

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """A [start, end) of `text` as a [begin, end) of the original string, in UTF-16 code units."""
        return self._units[self.origin_start[start]], self._units[self.origin_end[end - 1]]


def plain(text: str) -> Prepared:
    return Prepared(text, range(len(text)), range(1, len(text) + 1), text)


# Elements whose end (or start) breaks the text like a new line: sentences never run across them.
_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset", "figcaption",
    "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav",
    "ol", "p", "pre", "section", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
})
# Elements whose content is not text a reader sees.
_HIDDEN = frozenset({"script", "style", "template", "head", "title", "noscript"})
_ENTITY = re.compile(r"&(#[xX][0-9a-fA-F]+|#[0-9]+|[A-Za-z][A-Za-z0-9]*);?")


class _Stripper(HTMLParser):
    """Collects visible text with, per character, its [start, end) in the original string."""

    def __init__(self, original: str) -> None:
        super().__init__(convert_charrefs=False)
        self.original = original
        self.line_starts = [0, *(m.end() for m in re.finditer("\n", original))]
        self.chars: list[str] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.hidden = 0

    def _here(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def _emit(self, text: str, start: int, end: int | None = None) -> None:
        for i, ch in enumerate(text):
            self.chars.append(ch)
            self.starts.append(start if end is not None else start + i)
            self.ends.append(end if end is not None else start + i + 1)

    def _break(self) -> None:
        at = self._here()
        self._emit("\n", at, at)  # zero-width in the original: only a sentence boundary

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag in _BLOCKS:
            self._break()

    def handle_startendtag(self, tag: str, attrs: Any) -> None:
        if tag in _BLOCKS:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCKS:
            self._break()

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self._emit(data, self._here())

    def _entity(self) -> None:
        if self.hidden:
            return
        at = self._here()
        match = _ENTITY.match(self.original, at)
        raw = match.group(0) if match else "&"
        self._emit(unescape(raw), at, at + len(raw))

    def handle_entityref(self, name: str) -> None:
        self._entity()

    def handle_charref(self, name: str) -> None:
        self._entity()


def strip_html(original: str) -> Prepared:
    """The visible text of an HTML comment, entities decoded, with the map back into `original`."""
    parser = _Stripper(original)
    parser.feed(original)
    parser.close()
    return Prepared("".join(parser.chars), parser.starts, parser.ends, original)


@dataclass(frozen=True)
class Scored:
    summary: dict[str, float]  # label -> score of the whole comment
    spans: list[tuple[int, int, dict[str, float]]]  # (begin, end) in UTF-16 units of the original, label -> score


def group_bounds(bounds: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """At most `limit` spans: consecutive sentences merged into equal runs when there are more.

    One model call scores every span with the whole comment; the operator's batch
    limit (TOXIC_MAX_BATCH) bounds that call's size, so a 20 KB comment of tiny
    sentences cannot make a call thousands of rows long.
    """
    if len(bounds) <= limit:
        return bounds
    per = -(-len(bounds) // limit)
    return [(bounds[i][0], bounds[min(i + per, len(bounds)) - 1][1]) for i in range(0, len(bounds), per)]


def score_with_spans(
    prepared: Prepared,
    score: Callable[[list[str]], list[dict[str, float]]],
    *,
    spans: bool,
    max_spans: int,
) -> Scored:
    """The whole comment's scores and, with `spans`, every sentence's, from ONE call of `score`."""
    bounds = group_bounds(sentence_bounds(prepared.text), max_spans) if spans else []
    pieces = [prepared.text[a:b] for a, b in bounds]
    # Each distinct text once: a one-sentence comment is scored once, not twice.
    unique = list(dict.fromkeys([prepared.text, *pieces]))
    rows = dict(zip(unique, score(unique), strict=True))
    scored_spans = []
    for (a, b), piece in zip(bounds, pieces, strict=True):
        begin, end = prepared.original_span(a, b)
        scored_spans.append((begin, end, rows[piece]))
    return Scored(rows[prepared.text], scored_spans)
