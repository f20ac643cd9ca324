"""Compatibility names only: the bundle code lives in bundle.py, the conversion in importers/.

Kept so that callers outside the app (the fabfile, bench/, test fixtures)
that still import from here keep working while they move to the new homes:
    sha256_file, verify_model_file, write_bundle, TFLITE_FILE, KERAS_FILE -> toxic_service.bundle
    keras_to_tflite                                                     -> toxic_service.importers.keras_model
Nothing inside the app imports this module.
"""

from __future__ import annotations

from typing import Any

from toxic_service.bundle import KERAS_FILE, TFLITE_FILE, sha256_file, verify_model_file, write_bundle

__all__ = ["KERAS_FILE", "TFLITE_FILE", "keras_to_tflite", "sha256_file", "verify_model_file", "write_bundle"]


def keras_to_tflite(model: Any) -> bytes:
    from toxic_service.importers.keras_model import keras_to_tflite as convert

    return convert(model)
