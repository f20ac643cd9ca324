"""The Perspective drop-in's cost against the native API, on a running `toxic-service serve`.

Called by bench/service.py inside its real-server phase (the LiteRT worker, loopback), so both
paths are timed in the same run, on the same worker, on the same comments, interleaved one
request each (A, B, A, B ...) so drift in the machine's load falls on both alike.

- analyze vs native: `comments:analyze` asking for every attribute the bundle serves against
  `POST /detect-toxic` with the same one comment;
- spanAnnotations: `comments:analyze` with and without `spanAnnotations` on comments of 1-5
  sentences (as the span scorer splits them: toxic_service.perspective.spans.sentence_bounds).
"""

from __future__ import annotations

import http.client
import json
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from toxic_service.perspective.spans import sentence_bounds

ANALYZE = "/v1alpha1/comments:analyze"
MAX_TEXT_BYTES = 20480  # Perspective's text limit: a longer comment is refused, not timed


def _timed_post(port: int, path: str, body: dict[str, Any]) -> float:
    """Seconds for one POST on a new connection (as bench/service.py's other HTTP figures); 200 or it raises."""
    payload = json.dumps(body).encode()
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    seconds = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"POST {path} answered {response.status}: {data[:300]!r}")
    return seconds


def _interleaved(rounds: Sequence[str], first: Callable[[str], float], second: Callable[[str], float]) -> tuple[list, list]:
    a, b = [], []
    for i, text in enumerate(rounds):
        # Alternate which goes first: the second request of a pair finds the vocabulary cache warm.
        if i % 2:
            b.append(second(text))
            a.append(first(text))
        else:
            a.append(first(text))
            b.append(second(text))
    return a, b


def measure(port: int, comments: Sequence[str], attributes: Sequence[str], rounds: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    usable = [c for c in comments if c.strip() and len(c.encode()) <= MAX_TEXT_BYTES]
    by_sentences: dict[int, list[str]] = {n: [] for n in range(1, 6)}
    for text in usable:
        n = len(sentence_bounds(text))
        if n in by_sentences:
            by_sentences[n].append(text)
    missing = [n for n, texts in by_sentences.items() if not texts]
    if missing:
        raise RuntimeError(f"no comment of {missing} sentence(s) in the sample: cannot time spanAnnotations there")
    requested = {name: {} for name in attributes}

    def native(text: str) -> float:
        return _timed_post(port, "/detect-toxic", {"sequence": text})

    def analyze(text: str, spans: bool = False) -> float:
        return _timed_post(port, ANALYZE, {"comment": {"text": text}, "requestedAttributes": requested,
                                           "spanAnnotations": spans})

    for text in rng.sample(usable, 10):  # warm-up: both routes' first requests
        native(text)
        analyze(text, True)
    native_s, analyze_s = _interleaved([rng.choice(usable) for _ in range(rounds)], native, analyze)
    spans: dict[int, dict[str, list[float]]] = {}
    per_count = max(10, rounds // 5)
    for n, texts in by_sentences.items():
        whole, with_spans = _interleaved([rng.choice(texts) for _ in range(per_count)], analyze,
                                         lambda text: analyze(text, True))
        spans[n] = {"whole": whole, "spans": with_spans, "available": len(texts)}
    return {"native": native_s, "analyze": analyze_s, "spans": spans, "attributes": list(attributes)}
