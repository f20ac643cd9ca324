"""Prometheus metrics, correct under gunicorn's several worker processes.

With PROMETHEUS_MULTIPROC_DIR set (`toxic-service serve` always sets it),
prometheus_client writes each worker's values to files in that directory and
/metrics sums them across workers with the multiprocess collector; gunicorn's
`child_exit` hook (gunicorn_conf.py) marks dead workers. Without it (tests,
`flask run`) the values live in this process's own registry.

prometheus_client picks its storage when it is first imported, so the
environment variable must be set before the worker imports this module.

`toxic_build_info{version,revision,model}` (always 1) says what answers: it is
made at each scrape from the package, the release and the bundle, not stored,
so it reads the same in both modes.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

import toxic_service
from toxic_service.bundle import load_metadata, sha256_file
from toxic_service.errors import ToxicServiceError

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

API_KEY_REQUESTS = Counter(
    "toxic_api_key_requests",
    "Requests checked for an API key, by key NAME (never the key; every unknown key is '_unknown' and "
    "no key '_none', so the label set stays bounded) and outcome (accepted, missing, unknown, over_quota).",
    ("key", "outcome"),
    registry=REGISTRY,
)


UNKNOWN = "unknown"
REVISION_VARIABLE = "TOXIC_REVISION"


def revision() -> str:
    """TOXIC_REVISION, else the REVISION file of the release this package is installed in, else "unknown".

    toxic-release installs the app into <release>/lib and writes <release>/REVISION
    (the deployed commit) beside it; a checkout or a plain venv has neither.
    """
    value = os.environ.get(REVISION_VARIABLE, "").strip()
    if value:
        return value
    release = Path(toxic_service.__file__).resolve().parents[2]
    try:
        return (release / "REVISION").read_text(encoding="utf-8").strip() or UNKNOWN
    except OSError:
        return UNKNOWN


@functools.lru_cache(maxsize=8)
def _bundle_id(bundle_dir: Path, metadata_mtime_ns: int) -> str:
    """The id `toxic-release add-model` names shared/models/<id> by: sha256 of "name<TAB>sha256<LF>" lines.

    The model files' digests come from metadata.json (verified when the worker loaded
    them), so only the small files are read here.
    """
    listed = load_metadata(bundle_dir).model_files
    lines = []
    for path in sorted(bundle_dir.iterdir()):
        if path.is_file() and not path.is_symlink():
            digest = listed.get(path.name) or sha256_file(path)
            lines.append(f"{path.name}\t{digest}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()[:16]


def bundle_id(bundle_dir: Path) -> str:
    """The bundle's id, or "unknown" when it cannot be read (the worker then is not ready either)."""
    resolved = Path(bundle_dir).resolve()
    try:
        return _bundle_id(resolved, (resolved / "metadata.json").stat().st_mtime_ns)
    except (OSError, ToxicServiceError):
        return UNKNOWN


def _served_bundle_dir() -> Path | None:
    """The bundle of the app handling this request (create_app's settings), if any."""
    from flask import current_app, has_app_context

    if not has_app_context():
        return None
    settings = current_app.extensions.get("toxic_service.settings")
    return settings.bundle_dir if settings is not None else None


def build_info_registry(bundle_dir: Path | None) -> CollectorRegistry:
    """A registry holding only toxic_build_info for this package, release and bundle."""
    info = GaugeMetricFamily(
        "toxic_build_info",
        "What is serving: package version, release revision, model bundle id. Always 1.",
        labels=("version", "revision", "model"),
    )
    info.add_metric(
        (toxic_service.__version__, revision(), bundle_id(bundle_dir) if bundle_dir is not None else UNKNOWN), 1
    )
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Fixed(info))
    return registry


class _Fixed:
    """A collector that yields one prepared metric family."""

    def __init__(self, family: GaugeMetricFamily) -> None:
        self._family = family

    def collect(self):
        yield self._family


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def render(bundle_dir: Path | None = None) -> tuple[bytes, str]:
    """The exposition text for /metrics: all workers' values in multiprocess mode, and toxic_build_info.

    bundle_dir defaults to the bundle of the app handling the current request.
    """
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    info = build_info_registry(bundle_dir if bundle_dir is not None else _served_bundle_dir())
    return generate_latest(registry) + generate_latest(info), CONTENT_TYPE_LATEST
