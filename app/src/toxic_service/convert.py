"""Turn a Keras model into a model bundle: `model.tflite`, `model.keras`, `metadata.json`.

Shared by `model import` and `train`. TensorFlow is imported inside the
functions that need it, so importing this module costs nothing at serving time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from toxic_service.bundle import METADATA_FILE, BundleMetadata
from toxic_service.errors import BundleError

TFLITE_FILE = "model.tflite"
KERAS_FILE = "model.keras"


def keras_to_tflite(model: Any) -> bytes:
    """Convert with built-in ops only, so LiteRT and tflite-runtime (EL7) both run the result."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return bytes(converter.convert())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_model_file(bundle_dir: Path, meta: BundleMetadata, name: str) -> Path:
    """The bundle's model file `name`, checked against the sha256 its metadata records."""
    path = Path(bundle_dir) / name
    if not path.is_file():
        raise BundleError(f"{path}: no such file (the bundle has {', '.join(sorted(meta.model_files)) or 'no model files'})")
    expected = meta.model_files.get(name)
    if expected is not None and sha256_file(path) != expected:
        raise BundleError(f"{path}: sha256 differs from the one in metadata.json (file changed or corrupt)")
    return path


def write_bundle(
    bundle_dir: Path,
    *,
    tflite_bytes: bytes | None = None,
    keras_model: Any = None,
    metadata: BundleMetadata,
) -> BundleMetadata:
    """Write the model file(s), then metadata.json with their sha256; returns the metadata written.

    Each file is written under a temporary name and renamed into place, and
    metadata.json last, so a failed write never leaves a bundle whose metadata
    describes files that are not there.
    """
    if tflite_bytes is None and keras_model is None:
        raise BundleError("write_bundle needs tflite_bytes, keras_model, or both")
    bundle_dir = Path(bundle_dir)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=bundle_dir))
    try:
        if tflite_bytes is not None:
            (staging / TFLITE_FILE).write_bytes(tflite_bytes)
        if keras_model is not None:
            # Keras 3 insists on the `.keras` suffix, hence a staging directory rather than a temp name.
            keras_model.save(staging / KERAS_FILE)
        for name in (TFLITE_FILE, KERAS_FILE):
            staged = staging / name
            if staged.exists():
                files[name] = sha256_file(staged)
                os.replace(staged, bundle_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    written = dataclasses.replace(metadata, model_files=files)
    tmp_meta = bundle_dir / f".{METADATA_FILE}.tmp"
    tmp_meta.write_text(json.dumps(written.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp_meta, bundle_dir / METADATA_FILE)
    # A model file left from an earlier bundle is not described by the new metadata.
    for name in (TFLITE_FILE, KERAS_FILE):
        if name not in files:
            (bundle_dir / name).unlink(missing_ok=True)
    return written
