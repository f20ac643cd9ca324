"""The default runtime: a LiteRT interpreter on `model.tflite`, no TensorFlow.

Memory decides the shape of this module. XNNPACK packs the weights of every
unrolled LSTM step per interpreter: each interpreter of the tox-block model
costs 30-75 MB (by graph and batch size), so one interpreter per batch-size
bucket grew a worker to 254 MB (bench/service). One interpreter, resized when
the bucket changes, keeps a worker near 100 MB, and a resize costs 0.5-1.5 ms
(measured; datasets.md's 2-3 ms was an older figure). Batches are padded up to a few
bucket sizes (1, 8, 32, 64) so steady traffic of one shape never resizes,
and the largest bucket is 64 because a 256-row arena adds another ~30 MB for
no gain in comments per second; longer batches run as chunks of 64.

An interpreter is not thread-safe: one LiteRTRuntime serves one thread
(Scorer keeps one per thread).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from toxic_service.errors import BundleError, ConfigurationError
from toxic_service.runtime.base import checked_batch

BUCKETS = (1, 8, 32, 64)


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
    def __init__(self, model_path: Path | str, *, num_threads: int = 1, buckets: tuple[int, ...] = BUCKETS) -> None:
        self.model_path = str(model_path)
        self.num_threads = num_threads
        self._interpreter_class = interpreter_class()
        first = self._new_interpreter()
        detail = first.get_input_details()
        if len(detail) != 1 or len(first.get_output_details()) != 1:
            raise BundleError(f"{self.model_path}: expected one input and one output tensor")
        detail = detail[0]
        signature = detail.get("shape_signature", detail["shape"])
        if len(signature) != 2:
            raise BundleError(f"{self.model_path}: input has shape {list(signature)}, expected (batch, max_len)")
        self.max_len = int(detail["shape"][1])
        self.input_dtype = detail["dtype"]
        self.n_outputs = int(first.get_output_details()[0]["shape"][-1])
        if signature[0] == -1:
            self.buckets = tuple(sorted(set(buckets)))
        else:
            # A fixed-batch graph (converted without a dynamic batch) cannot be resized: run it as it is.
            self.buckets = (int(signature[0]),)
        first.allocate_tensors()
        self._interpreter = first
        self._size = int(detail["shape"][0])
        self.resizes = 0

    def _new_interpreter(self) -> Any:
        try:
            return self._interpreter_class(model_path=self.model_path, num_threads=self.num_threads)
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{self.model_path}: not a loadable .tflite model ({exc})") from exc

    def bucket_for(self, rows: int) -> int:
        """The smallest bucket holding `rows` (the largest if none does)."""
        for size in self.buckets:
            if size >= rows:
                return size
        return self.buckets[-1]

    def _sized(self, size: int) -> Any:
        """The interpreter with its input resized to `size` rows, only when that changed."""
        if size != self._size:
            index = self._interpreter.get_input_details()[0]["index"]
            self._interpreter.resize_tensor_input(index, [size, self.max_len], strict=True)
            self._interpreter.allocate_tensors()
            self._size = size
            self.resizes += 1
        return self._interpreter

    def _invoke(self, rows: np.ndarray, size: int) -> np.ndarray:
        interpreter = self._sized(size)
        padded = np.zeros((size, self.max_len), dtype=self.input_dtype)
        padded[: len(rows)] = rows
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], padded)
        interpreter.invoke()
        # get_tensor copies; the interpreter's buffer is reused by the next invoke.
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[: len(rows)].astype(np.float32)

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
