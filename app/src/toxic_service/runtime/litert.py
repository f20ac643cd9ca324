"""The default runtime: a LiteRT interpreter on `model.tflite`, no TensorFlow.

Resizing an interpreter's input costs 2-3 ms, more than a whole small batch,
so each batch size bucket (1, 8, 32, ...) gets its own interpreter, resized
once, and a batch is padded up to its bucket (the extra rows are discarded).
Batches beyond the largest bucket run as several invocations of it.

An interpreter is not thread-safe: one LiteRTRuntime serves one thread
(Scorer keeps one per thread).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from toxic_service.errors import BundleError, ConfigurationError

BUCKETS = (1, 8, 32, 64, 128, 256)


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
        self._interpreters: dict[int, Any] = {}
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
        self.interpreters_created = 0
        if self.buckets[0] == int(detail["shape"][0]):
            first.allocate_tensors()
            self._interpreters[self.buckets[0]] = first
            self.interpreters_created = 1

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

    def _interpreter(self, size: int) -> Any:
        interpreter = self._interpreters.get(size)
        if interpreter is None:
            interpreter = self._new_interpreter()
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, [size, self.max_len], strict=True)
            interpreter.allocate_tensors()
            self._interpreters[size] = interpreter
            self.interpreters_created += 1
        return interpreter

    def _invoke(self, rows: np.ndarray) -> np.ndarray:
        size = self.bucket_for(len(rows))
        interpreter = self._interpreter(size)
        padded = np.zeros((size, self.max_len), dtype=self.input_dtype)
        padded[: len(rows)] = rows
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], padded)
        interpreter.invoke()
        # get_tensor copies; the interpreter's buffer is reused by the next invoke.
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[: len(rows)].astype(np.float32)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.ndim != 2 or batch.shape[1] != self.max_len:
            raise ValueError(f"expected an array of shape (n, {self.max_len}), got {batch.shape}")
        if len(batch) == 0:
            return np.zeros((0, self.n_outputs), dtype=np.float32)
        largest = self.buckets[-1]
        parts = [self._invoke(batch[start : start + largest]) for start in range(0, len(batch), largest)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def close(self) -> None:
        self._interpreters.clear()
