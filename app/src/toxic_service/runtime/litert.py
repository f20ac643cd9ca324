"""The default runtime: a LiteRT interpreter on `model.tflite`, no TensorFlow.

Memory decides the shape of this module. XNNPACK packs the weights of every
unrolled LSTM step per interpreter: an interpreter of the tox-block model
costs ~33 MB with the word-projection graph and 30-75 MB with the unrolled
ones (by graph and batch size), so one interpreter per batch-size bucket grew
a worker to 254 MB (bench/service, first graph). One interpreter, resized
when the bucket changes, keeps a worker under 100 MB, and a resize costs
about 1 ms (0.3 ms for the unrolled graph). Batches are padded up to a few
bucket sizes (1, 8, 32, 64) so steady traffic of one shape never resizes,
and the largest bucket is 64 because a 256-row arena adds another ~30 MB for
no gain in comments per second; longer batches run as chunks of 64.

Two input forms, told apart by the model's inputs:
- word indexes, one int32 input [batch, max_len] (any converted Keras model);
- a word-projection graph (importers/word_projection.py, what `model import`
  makes of Embedding -> LSTM models): `words` [W], the batch's distinct word
  indexes, and `positions` [batch, max_len], each position's slot in `words`.
  This runtime builds both from the same [batch, max_len] indexes with
  `np.unique`. W takes one of two values per bucket: max_len when the
  call's distinct words fit it (one comment, or a comment with its own
  sentences for spanAnnotations: 8 rows cost 2.9 ms at W=100 against 4.0 ms
  at W=800, measured 2026-12-01), else max_len per row, at most 2,048. So
  steady traffic of one shape never resizes; the rare batch with more
  distinct words than that runs as several calls of fewer rows, exact all
  the same.

An interpreter is not thread-safe: one LiteRTRuntime serves one thread
(Scorer keeps one per thread).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from toxic_service.errors import BundleError, ConfigurationError
from toxic_service.runtime.base import checked_batch

BUCKETS = (1, 8, 32, 64)
# Distinct words per call of a word-projection model at the largest buckets. Projecting a slot costs
# the same whether it holds a word or not, so W is not simply rows x max_len (6,400): 64 comments of the
# insults test file hold 500-900 distinct words. 2,048 leaves room for longer comments before a batch
# splits, for ~6% of a call against 1,024 on that file's batches (measured 2026-11-29).
WORDS_CAP = 2048


def interpreter_class() -> Any:
    """LiteRT's Interpreter; tflite-runtime's on EL7, where ai-edge-litert has no wheel."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise ConfigurationError(
                "runtime 'litert' needs the ai-edge-litert package (or tflite-runtime on glibc < 2.27)"
            ) from None
    return Interpreter


class LiteRTRuntime:
    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        model_content: bytes | None = None,
        num_threads: int = 1,
        buckets: tuple[int, ...] = BUCKETS,
        words_cap: int = WORDS_CAP,
    ) -> None:
        if (model_path is None) == (model_content is None):
            raise ValueError("give model_path or model_content")
        self.model_path = str(model_path) if model_path is not None else "the converted model"
        self._model_content = model_content
        self.num_threads = num_threads
        self._interpreter_class = interpreter_class()
        first = self._new_interpreter()
        if len(first.get_output_details()) != 1:
            raise BundleError(f"{self.model_path}: expected one output tensor")
        self._positions, self._words = _input_roles(first.get_input_details(), self.model_path)
        signature = self._positions.get("shape_signature", self._positions["shape"])
        self.max_len = int(self._positions["shape"][1])
        self.input_dtype = self._positions["dtype"]
        self.n_outputs = int(first.get_output_details()[0]["shape"][-1])
        self.resizable = signature[0] == -1
        if self.resizable:
            self.buckets = tuple(sorted(set(buckets)))
        else:
            # A fixed-batch graph (converted without a dynamic batch) cannot be resized: run it as it is.
            self.buckets = (int(signature[0]),)
        self.words_cap = words_cap
        self._interpreter = first
        self._shape: tuple[int, int] = (-1, -1)
        self.resizes = 0
        self._sized(self.buckets[0])
        self.resizes = 0  # resizes after start-up

    @property
    def projects_words(self) -> bool:
        """True for a word-projection graph (inputs `words` and `positions`)."""
        return self._words is not None

    def _new_interpreter(self) -> Any:
        try:
            if self._model_content is not None:
                return self._interpreter_class(model_content=self._model_content, num_threads=self.num_threads)
            return self._interpreter_class(model_path=self.model_path, num_threads=self.num_threads)
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{self.model_path}: not a loadable .tflite model ({exc})") from exc

    def bucket_for(self, rows: int) -> int:
        """The smallest bucket holding `rows` (the largest if none does)."""
        for size in self.buckets:
            if size >= rows:
                return size
        return self.buckets[-1]

    def words_for(self, size: int) -> int:
        """Slots in `words` for a call of `size` rows: every distinct word of a row always fits."""
        return max(self.max_len, min(size * self.max_len, self.words_cap))

    def width_for(self, size: int, distinct: int) -> int:
        """Slots in `words` for a call of `size` rows holding `distinct` words: max_len when they fit it."""
        return self.max_len if distinct <= self.max_len else self.words_for(size)

    def _sized(self, size: int, width: int | None = None) -> Any:
        """The interpreter with its inputs resized for `size` rows (and `width` words), only when that changed."""
        shape = (size, width if width is not None else self.words_for(size))
        if shape != self._shape:
            interpreter = self._interpreter
            if self.resizable:
                interpreter.resize_tensor_input(self._positions["index"], [size, self.max_len], strict=True)
                if self._words is not None:
                    interpreter.resize_tensor_input(self._words["index"], [shape[1]], strict=True)
            interpreter.allocate_tensors()
            self._shape = shape
            self.resizes += 1
        return self._interpreter

    def _run(self, interpreter: Any) -> np.ndarray:
        interpreter.invoke()
        # get_tensor copies; the interpreter's buffer is reused by the next invoke.
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).astype(np.float32)

    def _invoke(self, rows: np.ndarray, size: int) -> np.ndarray:
        padded = np.zeros((size, self.max_len), dtype=self.input_dtype)
        if self._words is None:
            interpreter = self._sized(size)
            padded[: len(rows)] = rows
            interpreter.set_tensor(self._positions["index"], padded)
            return self._run(interpreter)[: len(rows)]
        distinct = np.unique(rows, return_inverse=True)
        width = self.width_for(size, len(distinct[0]))
        interpreter = self._sized(size, width)
        parts = []
        for group, words, slots in _word_groups(rows, width, distinct):
            padded[: len(group)] = slots
            padded[len(group) :] = 0
            # Unused slots hold index 0, a real row of every embedding; nothing points at them.
            word_slots = np.zeros(width, dtype=np.int32)
            word_slots[: len(words)] = words
            interpreter.set_tensor(self._words["index"], word_slots)
            interpreter.set_tensor(self._positions["index"], padded)
            parts.append(self._run(interpreter)[: len(group)])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = checked_batch(batch, self.max_len)
        if len(batch) == 0:
            return np.zeros((0, self.n_outputs), dtype=np.float32)
        largest = self.buckets[-1]
        # Every chunk of a long batch, the short last one too, runs at the largest size: no resize in between.
        size = self.bucket_for(len(batch))
        parts = [self._invoke(batch[start : start + largest], size) for start in range(0, len(batch), largest)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def close(self) -> None:
        self._interpreter = None


def _input_roles(details: list[dict[str, Any]], where: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(positions or indexes input, words input or None), from the model's inputs' ranks."""
    ranks = sorted(len(detail.get("shape_signature", detail["shape"])) for detail in details)
    if ranks == [2]:
        return details[0], None
    if ranks == [1, 2]:
        words, positions = sorted(details, key=lambda detail: len(detail["shape"]))
        if words["dtype"] != np.int32 or positions["dtype"] != np.int32:
            raise BundleError(f"{where}: a word-projection model takes int32 inputs")
        if positions.get("shape_signature", positions["shape"])[0] != -1 or words.get("shape_signature", [0])[0] != -1:
            raise BundleError(f"{where}: a word-projection model needs a resizable batch and word list")
        return positions, words
    shapes = [list(detail.get("shape_signature", detail["shape"])) for detail in details]
    raise BundleError(
        f"{where}: inputs {shapes}; expected one (batch, max_len) input, or words (W) and positions (batch, max_len)"
    )


def _word_groups(
    rows: np.ndarray, width: int, distinct: tuple[np.ndarray, np.ndarray]
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(rows, their distinct words, each position's slot) for runs of rows whose distinct words fit `width`.

    `distinct` is `np.unique(rows, return_inverse=True)`, which the caller needed first to pick `width`.
    """
    words, slots = distinct
    if len(words) <= width:
        yield rows, words, slots.reshape(rows.shape)
        return
    # More distinct words than slots (long, varied comments): fewer rows per call. A row alone always fits.
    start = 0
    while start < len(rows):
        seen: set[int] = set()
        end = start
        while end < len(rows):
            new = set(rows[end].tolist()) - seen
            if len(seen) + len(new) > width:
                break
            seen |= new
            end += 1
        group = rows[start:end]
        words, slots = np.unique(group, return_inverse=True)
        yield group, words, slots.reshape(group.shape)
        start = end
