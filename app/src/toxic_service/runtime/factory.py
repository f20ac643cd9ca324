"""Create the configured inference runtime for a bundle (call after the fork)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from toxic_service.bundle import KERAS_FILE, TFLITE_FILE, BundleMetadata, verify_model_file
from toxic_service.errors import BundleError
from toxic_service.runtime.base import InferenceRuntime
from toxic_service.settings import Settings

if TYPE_CHECKING:
    from toxic_service.runtime.keras import KerasRuntime
    from toxic_service.runtime.litert import LiteRTRuntime


def model_file_name(settings: Settings) -> str:
    """The bundle file `settings.runtime` loads."""
    return TFLITE_FILE if settings.runtime == "litert" else KERAS_FILE


def create_runtime(settings: Settings, bundle_dir: Path, meta: BundleMetadata) -> InferenceRuntime:
    """Verify the bundle's model file against its sha256, then load it (`load_runtime`)."""
    return load_runtime(settings, verify_model_file(bundle_dir, meta, model_file_name(settings)), meta)


def load_runtime(settings: Settings, model_path: Path, meta: BundleMetadata) -> InferenceRuntime:
    """Load an already verified model file for `settings.runtime`, refusing one that does not fit its metadata.

    No hashing here: build_scorer verifies the file once per worker and every
    thread's runtime loads that same path.
    """
    runtime: LiteRTRuntime | KerasRuntime
    if settings.runtime == "litert":
        from toxic_service.runtime.litert import LiteRTRuntime

        runtime = LiteRTRuntime(model_path, num_threads=settings.inference_threads)
    else:
        from toxic_service.runtime.keras import KerasRuntime

        runtime = KerasRuntime(model_path, num_threads=settings.inference_threads)
    if runtime.max_len != meta.max_len or runtime.n_outputs != len(meta.labels):
        runtime.close()
        raise BundleError(
            f"{model_path}: the model takes {runtime.max_len} indexes and gives {runtime.n_outputs} scores, "
            f"but metadata.json says max_len {meta.max_len} and {len(meta.labels)} labels"
        )
    return runtime
