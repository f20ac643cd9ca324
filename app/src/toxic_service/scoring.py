"""Text in, one score per bundle label out: tokenizer -> one vocabulary lookup -> one model call per batch.

A Scorer is built once per worker, after gunicorn forks (`build_scorer`). The
store connects per thread by itself; the runtime (an interpreter is not
thread-safe) is created lazily, one per thread, through `runtime_factory`.
A bundle with a stack (metadata `stack`) has those labels replaced by their
stackers over the text's char n-grams and the model's own scores
(toxic_service.stack, plain numpy); every other label is the model's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

from toxic_service.bundle import BundleMetadata, check_vocabulary, load_metadata, verify_model_file
from toxic_service.errors import NotReady, StoreUnavailable, ToxicServiceError
from toxic_service.runtime.base import InferenceRuntime
from toxic_service.settings import Settings
from toxic_service.stack import StackModel
from toxic_service.text import encode, pad, tokenize
from toxic_service.vocab.base import VocabularyStore


class Scorer:
    def __init__(
        self,
        metadata: BundleMetadata,
        store: VocabularyStore,
        runtime_factory: Callable[[], InferenceRuntime],
        stack: StackModel | None = None,
    ) -> None:
        self.metadata = metadata
        self._stack = stack
        self._stack_columns = [metadata.labels.index(label) for label in metadata.stack_labels] if stack else []
        self.store = store  # the API reads the cache's `hits`/`misses` from here
        self._runtime_factory = runtime_factory
        self._local = threading.local()
        self._runtimes: list[InferenceRuntime] = []
        self._lock = threading.Lock()

    @property
    def labels(self) -> tuple[str, ...]:
        return self.metadata.labels

    def runtime(self) -> InferenceRuntime:
        """This thread's runtime, created on first use."""
        runtime = getattr(self._local, "runtime", None)
        # A runtime made before a fork stays with the parent: TensorFlow state must not cross it.
        if runtime is None or self._local.pid != os.getpid():
            runtime = self._runtime_factory()
            self._local.runtime = runtime
            self._local.pid = os.getpid()
            with self._lock:
                self._runtimes.append(runtime)
        return runtime

    def encode_batch(self, texts: Sequence[str]) -> Any:
        """(n, max_len) int32 indexes for `texts`, with one store lookup for all their distinct words."""
        meta = self.metadata
        tokenized = [tokenize(text, meta.tokenizer) for text in texts]
        distinct = dict.fromkeys(chain.from_iterable(tokenized))
        mapping = self.store.lookup(distinct) if distinct else {}
        return pad([encode(words, mapping, meta) for words in tokenized], meta.max_len, meta.pad_index)

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """One dict {label: score} per text, in the bundle's label order."""
        if not texts:
            return []
        batch = self.encode_batch(texts)
        scores = self.runtime().predict(batch)
        if scores.shape != (len(texts), len(self.labels)):
            raise ToxicServiceError(
                f"the model returned shape {scores.shape} for {len(texts)} texts and {len(self.labels)} labels"
            )
        if self._stack is not None:
            stacked = self._stack.score(texts, scores)
            scores = scores.copy()  # the runtime's array may be its own buffer
            scores[:, self._stack_columns] = stacked
        # tolist() gives Python floats in one call (JSON-serialisable), not one numpy scalar per score.
        return [dict(zip(self.labels, row, strict=True)) for row in scores.tolist()]

    def check_ready(self) -> None:
        """For /readyz: the store answers and this thread's runtime loads. Raises StoreUnavailable or NotReady."""
        self.store.ping()
        try:
            self.runtime()
        except StoreUnavailable:
            raise
        except ToxicServiceError as exc:
            raise NotReady(f"the model cannot be loaded: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            runtimes, self._runtimes = self._runtimes, []
        for runtime in runtimes:
            runtime.close()
        self._local = threading.local()
        self.store.close()


def build_scorer(
    settings: Settings,
    *,
    on_lookup: Callable[[int, int], None] | None = None,
) -> Scorer:
    """Load the bundle's metadata, open the store, refuse a mismatched pair (VocabularyMismatch).

    Raises StoreUnavailable when the store does not answer, BundleError for a
    bad bundle. The runtime itself is created on first use in each thread.
    """
    from toxic_service.bundle import STACK_FILE
    from toxic_service.runtime.factory import load_runtime, model_file_name
    from toxic_service.stack import load_stack
    from toxic_service.vocab.factory import open_store

    bundle_dir = settings.bundle_dir
    meta = load_metadata(bundle_dir)
    # Fail at start-up, not on the first request, when the runtime's model file is missing or changed.
    # The one sha256 of the model per worker: every thread's runtime loads this verified path.
    model_path = verify_model_file(bundle_dir, meta, model_file_name(settings))
    stack = (
        load_stack(verify_model_file(bundle_dir, meta, STACK_FILE), len(meta.labels), len(meta.stack_labels))
        if meta.stack_labels
        else None
    )
    store = open_store(settings, on_lookup=on_lookup)
    try:
        check_vocabulary(meta, store.info())
    except BaseException:
        store.close()
        raise
    return Scorer(meta, store, lambda: load_runtime(settings, model_path, meta), stack)
