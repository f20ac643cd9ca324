"""A model bundle: a directory with the model file(s) and `metadata.json`.

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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toxic_service.errors import BundleError, VocabularyMismatch
from toxic_service.vocab.base import VocabularyInfo

METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1
SEED_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
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
    )


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
