"""Create the configured inference runtime for a bundle (call after the fork)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from toxic_service.bundle import BundleMetadata
from toxic_service.convert import KERAS_FILE, TFLITE_FILE, verify_model_file
from toxic_service.errors import BundleError
from toxic_service.runtime.base import InferenceRuntime
from toxic_service.settings import Settings

if TYPE_CHECKING:
    from toxic_service.runtime.keras import KerasRuntime


def create_runtime(settings: Settings, bundle_dir: Path, meta: BundleMetadata) -> InferenceRuntime:
    """Load the bundle's model for `settings.runtime`, refusing one that does not fit its metadata."""
    if settings.runtime == "litert":
        from toxic_service.runtime.litert import LiteRTRuntime

        model_path = verify_model_file(bundle_dir, meta, TFLITE_FILE)
        runtime: LiteRTRuntime | KerasRuntime = LiteRTRuntime(model_path, num_threads=settings.inference_threads)
    else:
        from toxic_service.runtime.keras import KerasRuntime

        model_path = verify_model_file(bundle_dir, meta, KERAS_FILE)
        runtime = KerasRuntime(model_path, num_threads=settings.inference_threads)
    if runtime.max_len != meta.max_len or runtime.n_outputs != len(meta.labels):
        runtime.close()
        raise BundleError(
            f"{model_path}: the model takes {runtime.max_len} indexes and gives {runtime.n_outputs} scores, "
            f"but metadata.json says max_len {meta.max_len} and {len(meta.labels)} labels"
        )
    return runtime
