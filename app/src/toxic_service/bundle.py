"""A model bundle: a directory with the model file(s) and `metadata.json`; this module owns it.

Everything about a bundle lives here: its file names, the sha256 of each
model file, verifying them, writing a bundle, reading and checking its
metadata. The label set is the bundle's: serving, `check` and /readyz read
`labels` from metadata.json; JIGSAW_LABELS is only the default a new bundle
gets (`model import` of a 6-output model, `train` on a Jigsaw CSV).

The metadata says everything the serving side needs to turn text into the
exact index sequences the model was trained on, and which vocabulary those
indexes come from (by checksum): a model and a vocabulary that do not belong
together are refused, never silently served.

metadata.json, format_version 1:
    labels          label names in model output order
    trained_labels  the labels the model really learned (others are untrained)
    max_len         sequence length; pre-padding and pre-truncation as Keras
    index_base      smallest word index (1 for Keras tokenizers)
    pad_index       index used for padding (0)
    oov_index       index for unknown words, or null to drop them (Keras
                    Tokenizer without oov_token, as tox-block)
    num_words       indexes >= num_words are dropped (Keras num_words), or null
    tokenizer       {"lower": bool, "filters": str, "split": str}
    vocabulary      {"checksum": str, "size": int, "source": str}
    model           {"source": str, "licence": str, "files": {name: sha256}}
    perspective_attributes  {Perspective attribute name: label} served by the
                    Perspective API (optional: a bundle written before it had
                    the field gets the Jigsaw map restricted to its trained
                    labels); edit it to rename or withhold attributes
    languages       language codes the model serves (optional; ["en"] when
                    absent: every bundle made before the field was English)
    thresholds      {label: number in [0, 1]} (optional): the recommended
                    threshold per label, the default of its TOXIC_THRESHOLD_*
                    setting (0.5 for a label it does not name)
    stack           {"labels": [str, ...], "file": "stack.npz"} (optional): those
                    labels' scores are replaced by stackers over hashed char
                    n-gram LRs and the model's logits (toxic_service.stack),
                    one row of the file per label in this order; the file's
                    sha256 is in model.files beside the model's. A bundle
                    written before several labels could be stacked has
                    {"label": str, ...}: read as a list of one
    label_sources   {label: what taught it} (optional): per-label provenance
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toxic_service.errors import BundleError, VocabularyMismatch
from toxic_service.vocab.base import VocabularyInfo

METADATA_FILE = "metadata.json"
TFLITE_FILE = "model.tflite"
KERAS_FILE = "model.keras"
STACK_FILE = "stack.npz"
MODEL_FILES = (TFLITE_FILE, KERAS_FILE)
FORMAT_VERSION = 1
# The Jigsaw challenge's six labels: the default of a NEW bundle only (model import, train).
# Everything that reads a bundle uses its `labels`, so a 7-label bundle serves and passes `check`.
JIGSAW_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
# Perspective API attribute -> Jigsaw label: the map a bundle gets when its metadata names none
# (a new bundle from `model import` / `train`, or one written before the field). Restricted to the
# bundle's trained labels, so an attribute is never served from a label the model did not learn.
JIGSAW_PERSPECTIVE_ATTRIBUTES = {
    "TOXICITY": "toxic",
    "SEVERE_TOXICITY": "severe_toxic",
    "IDENTITY_ATTACK": "identity_hate",
    "INSULT": "insult",
    "PROFANITY": "obscene",
    "THREAT": "threat",
}
# The languages a bundle serves when it declares none: the Jigsaw data and every bundle we make are English.
DEFAULT_LANGUAGES = ("en",)
_ATTRIBUTE_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")
# Keras Tokenizer's default `filters`.
KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'


@dataclass(frozen=True)
class TokenizerConfig:
    lower: bool = True
    filters: str = KERAS_FILTERS
    split: str = " "


@dataclass(frozen=True)
class BundleMetadata:
    labels: tuple[str, ...]
    max_len: int
    vocabulary_checksum: str
    vocabulary_size: int
    index_base: int = 1
    pad_index: int = 0
    oov_index: int | None = None
    num_words: int | None = None
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    trained_labels: tuple[str, ...] = ()
    vocabulary_source: str = ""
    model_source: str = ""
    model_licence: str = ""
    model_files: dict[str, str] = field(default_factory=dict)
    # None: the Jigsaw default for this bundle's labels (filled in at construction, so it is written out).
    perspective_attributes: dict[str, str] | None = None
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    # Recommended threshold per label (empty: none recommended, 0.5 applies; settings.thresholds_for).
    thresholds: dict[str, float] = field(default_factory=dict)
    # The labels a stack file replaces, in its row order (empty: the model's outputs are served as they are).
    stack_labels: tuple[str, ...] = ()
    label_sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.perspective_attributes is None:
            learned = set(self.trained_labels or self.labels)
            default = {name: label for name, label in JIGSAW_PERSPECTIVE_ATTRIBUTES.items() if label in learned}
            object.__setattr__(self, "perspective_attributes", default)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "labels": list(self.labels),
            "trained_labels": list(self.trained_labels or self.labels),
            "max_len": self.max_len,
            "index_base": self.index_base,
            "pad_index": self.pad_index,
            "oov_index": self.oov_index,
            "num_words": self.num_words,
            "tokenizer": {
                "lower": self.tokenizer.lower,
                "filters": self.tokenizer.filters,
                "split": self.tokenizer.split,
            },
            "vocabulary": {
                "checksum": self.vocabulary_checksum,
                "size": self.vocabulary_size,
                "source": self.vocabulary_source,
            },
            "model": {
                "source": self.model_source,
                "licence": self.model_licence,
                "files": dict(self.model_files),
            },
            "perspective_attributes": dict(self.perspective_attributes or {}),
            "languages": list(self.languages),
            # Written only when present, so the id (model_identity) of a bundle without them does not change.
            **({"thresholds": dict(self.thresholds)} if self.thresholds else {}),
            **({"stack": {"labels": list(self.stack_labels), "file": STACK_FILE}} if self.stack_labels else {}),
            **({"label_sources": dict(self.label_sources)} if self.label_sources else {}),
        }

    def write(self, bundle_dir: Path) -> Path:
        bundle_dir.mkdir(parents=True, exist_ok=True)
        path = bundle_dir / METADATA_FILE
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return path


def _require(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in doc:
        raise BundleError(f"{where}: missing field '{key}'")
    value = doc[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise BundleError(f"{where}: field '{key}' has the wrong type ({type(value).__name__})")
    return value


def load_metadata(bundle_dir: Path) -> BundleMetadata:
    """Read and validate `metadata.json`; every defect is a BundleError naming it."""
    path = Path(bundle_dir) / METADATA_FILE
    if not path.is_file():
        raise BundleError(f"{path}: no such file (is {bundle_dir} a model bundle? build one with `toxic-service model import`)")
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise BundleError(f"{path}: expected a JSON object")
    where = str(path)
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{where}: format_version {version!r} is not supported (expected {FORMAT_VERSION})")
    labels = _require(doc, "labels", list, where)
    if not labels or not all(isinstance(x, str) and x for x in labels) or len(set(labels)) != len(labels):
        raise BundleError(f"{where}: 'labels' must be a non-empty list of distinct names")
    max_len = _require(doc, "max_len", int, where)
    if not 1 <= max_len <= 10_000:
        raise BundleError(f"{where}: 'max_len' must be between 1 and 10000")
    vocab = _require(doc, "vocabulary", dict, where)
    checksum = _require(vocab, "checksum", str, f"{where} vocabulary")
    size = _require(vocab, "size", int, f"{where} vocabulary")
    tok = doc.get("tokenizer") or {}
    if not isinstance(tok, dict):
        raise BundleError(f"{where}: 'tokenizer' must be an object")
    model = doc.get("model") or {}
    oov = doc.get("oov_index")
    num_words = doc.get("num_words")
    for name, value in (("oov_index", oov), ("num_words", num_words)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise BundleError(f"{where}: '{name}' must be a non-negative integer or null")
    trained = doc.get("trained_labels") or labels
    if not set(trained) <= set(labels):
        raise BundleError(f"{where}: 'trained_labels' names labels that are not in 'labels'")
    return BundleMetadata(
        perspective_attributes=_perspective_attributes(doc, tuple(trained), where),
        languages=_languages(doc, where),
        thresholds=_thresholds(doc, tuple(labels), where),
        labels=tuple(labels),
        max_len=max_len,
        vocabulary_checksum=checksum,
        vocabulary_size=size,
        index_base=int(doc.get("index_base", 1)),
        pad_index=int(doc.get("pad_index", 0)),
        oov_index=oov,
        num_words=num_words,
        tokenizer=TokenizerConfig(
            lower=bool(tok.get("lower", True)),
            filters=str(tok.get("filters", KERAS_FILTERS)),
            split=str(tok.get("split", " ")) or " ",
        ),
        trained_labels=tuple(trained),
        vocabulary_source=str(vocab.get("source", "")),
        model_source=str(model.get("source", "")),
        model_licence=str(model.get("licence", "")),
        model_files=dict(model.get("files") or {}),
        stack_labels=_stack_labels(doc, tuple(labels), dict(model.get("files") or {}), where),
        label_sources=_label_sources(doc, tuple(labels), where),
    )


def _stack_labels(doc: dict[str, Any], labels: tuple[str, ...], files: dict[str, str], where: str) -> tuple[str, ...]:
    if doc.get("stack") is None:
        return ()
    stack = doc["stack"]
    stacked = None
    if isinstance(stack, dict) and stack.get("file") == STACK_FILE:
        stacked = stack.get("labels", [stack["label"]] if "label" in stack else None)
    if (
        not isinstance(stacked, list)
        or not stacked
        or not all(isinstance(lab, str) and lab in labels for lab in stacked)
        or len(set(stacked)) != len(stacked)
    ):
        raise BundleError(
            f"{where}: 'stack' must be {{\"labels\": [distinct labels of {', '.join(labels)}], \"file\": \"{STACK_FILE}\"}}"
        )
    if STACK_FILE not in files:
        raise BundleError(f"{where}: 'stack' names {STACK_FILE} but model.files records no sha256 for it")
    return tuple(stacked)


def _label_sources(doc: dict[str, Any], labels: tuple[str, ...], where: str) -> dict[str, str]:
    sources = doc.get("label_sources") or {}
    if not isinstance(sources, dict) or not all(k in labels and isinstance(v, str) for k, v in sources.items()):
        raise BundleError(f"{where}: 'label_sources' must map bundle labels to descriptions")
    return dict(sources)


def _perspective_attributes(doc: dict[str, Any], trained: tuple[str, ...], where: str) -> dict[str, str] | None:
    """The bundle's attribute map, checked; None when absent (BundleMetadata fills in the Jigsaw default)."""
    if doc.get("perspective_attributes") is None:
        return None
    mapping = doc["perspective_attributes"]
    if not isinstance(mapping, dict):
        raise BundleError(f"{where}: 'perspective_attributes' must be an object {{ATTRIBUTE: label}}")
    for name, label in mapping.items():
        if not _ATTRIBUTE_NAME.fullmatch(name):
            raise BundleError(f"{where}: 'perspective_attributes' name {name!r} is not an attribute name (A-Z, 0-9, _)")
        if label not in trained:
            raise BundleError(
                f"{where}: 'perspective_attributes' maps {name} to {label!r}, which is not a label the model learned "
                f"({', '.join(trained)})"
            )
    return dict(mapping)


def _thresholds(doc: dict[str, Any], labels: tuple[str, ...], where: str) -> dict[str, float]:
    """The recommended thresholds, checked: each names a label of the bundle and is a number in [0, 1]."""
    if doc.get("thresholds") is None:
        return {}
    thresholds = doc["thresholds"]
    if not isinstance(thresholds, dict):
        raise BundleError(f"{where}: 'thresholds' must be an object {{label: number between 0 and 1}}")
    for label, value in thresholds.items():
        if label not in labels:
            raise BundleError(f"{where}: 'thresholds' names {label!r}, which is not a label ({', '.join(labels)})")
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            raise BundleError(f"{where}: 'thresholds' {label}: {value!r} is not a number between 0 and 1")
    return {label: float(value) for label, value in thresholds.items()}


def _languages(doc: dict[str, Any], where: str) -> tuple[str, ...]:
    if doc.get("languages") is None:
        return DEFAULT_LANGUAGES
    languages = doc["languages"]
    if (
        not isinstance(languages, list)
        or not languages
        or not all(isinstance(x, str) and _LANGUAGE_CODE.fullmatch(x) for x in languages)
    ):
        raise BundleError(f"{where}: 'languages' must be a non-empty list of language codes such as \"en\"")
    return tuple(languages)


def check_vocabulary(meta: BundleMetadata, info: VocabularyInfo) -> None:
    """Refuse a model and a vocabulary that do not belong together."""
    if meta.vocabulary_checksum != info.checksum:
        raise VocabularyMismatch(
            "the model and the vocabulary do not belong together: the model was built with vocabulary "
            f"{meta.vocabulary_checksum[:19]}… ({meta.vocabulary_size} words, {meta.vocabulary_source or 'unknown source'}) "
            f"but the store holds {info.checksum[:19]}… ({info.size} words, {info.source or 'unknown source'}); "
            "import the matching vocabulary with `toxic-service vocab import`"
        )
    if meta.index_base != info.index_base:
        raise VocabularyMismatch(
            f"the model expects index_base {meta.index_base} but the vocabulary uses {info.index_base}"
        )


def model_identity(meta: BundleMetadata, model_file: str) -> dict[str, str]:
    """Which model answered, for every answer (the X-Toxic-Model header, the native API's `model` field).

    `bundle` is the first 16 hex digits of the sha256 of the metadata in canonical JSON
    (sorted keys, no spaces): it changes with any model file, the vocabulary, the
    tokenizer, the labels or the attribute map. `sha256` is the served model file's
    digest as metadata.json records it (verified when the worker started).
    """
    canonical = json.dumps(meta.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return {
        "bundle": hashlib.sha256(canonical.encode()).hexdigest()[:16],
        "file": model_file,
        "sha256": meta.model_files.get(model_file, ""),
        "source": meta.model_source,
    }


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (model files are tens of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_model_file(bundle_dir: Path, meta: BundleMetadata, name: str) -> Path:
    """The bundle's model file `name`, checked against the sha256 its metadata records.

    Hashing reads the whole file: serving calls this once per worker start
    (scoring.build_scorer) and hands the verified path to every runtime it makes.
    """
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
    stack_bytes: bytes | None = None,
    metadata: BundleMetadata,
) -> BundleMetadata:
    """Write the model file(s), then metadata.json with their sha256; returns the metadata written.

    Each file is written under a temporary name and renamed into place, and
    metadata.json last, so a failed write never leaves a bundle whose metadata
    describes files that are not there. `keras_model` is any object with
    Keras's `save(path)`; nothing here imports TensorFlow. `stack_bytes` is
    the stack file (metadata.stack_labels says which labels it replaces).
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
        if (stack_bytes is None) != (not metadata.stack_labels):
            raise BundleError("write_bundle: stack_bytes and metadata.stack_labels go together")
        if stack_bytes is not None:
            (staging / STACK_FILE).write_bytes(stack_bytes)
        for name in (*MODEL_FILES, STACK_FILE):
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
    for name in (*MODEL_FILES, STACK_FILE):
        if name not in files:
            (bundle_dir / name).unlink(missing_ok=True)
    return written
