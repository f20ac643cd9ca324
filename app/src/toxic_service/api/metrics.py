"""Prometheus metrics, correct under gunicorn's several worker processes.

With PROMETHEUS_MULTIPROC_DIR set (`toxic-service serve` always sets it),
prometheus_client writes each worker's values to files in that directory and
/metrics sums them across workers with the multiprocess collector; gunicorn's
`child_exit` hook (gunicorn_conf.py) marks dead workers. Without it (tests,
`flask run`) the values live in this process's own registry.

prometheus_client picks its storage when it is first imported, so the
environment variable must be set before the worker imports this module.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

# Metric objects are process-wide: several create_app() calls (tests) share them.
REGISTRY = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "toxic_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ("route", "method", "status"),
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "toxic_http_request_duration_seconds",
    "Time from request start to response, by route template, method and status.",
    ("route", "method", "status"),
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
INFERENCE_LATENCY = Histogram(
    "toxic_inference_duration_seconds",
    "Time to score one request or batch: tokenize, one vocabulary query, one model call.",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "toxic_batch_size",
    "Comments scored per model call.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
    registry=REGISTRY,
)
VOCAB_CACHE_HITS = Counter(
    "toxic_vocab_cache_hits", "Words found in the worker's vocabulary LRU cache.", registry=REGISTRY
)
VOCAB_CACHE_MISSES = Counter(
    "toxic_vocab_cache_misses", "Words the vocabulary LRU cache sent to the store.", registry=REGISTRY
)
SCORER_BUILDS = Counter(
    "toxic_scorer_builds",
    "Attempts to load the model and open the vocabulary, by outcome.",
    ("outcome",),
    registry=REGISTRY,
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def render() -> tuple[bytes, str]:
    """The exposition text for /metrics: all workers' values in multiprocess mode."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
