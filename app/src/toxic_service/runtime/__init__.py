"""Inference runtimes: int32 index batches in, float32 scores out."""

from toxic_service.runtime.base import InferenceRuntime

__all__ = ["InferenceRuntime"]
