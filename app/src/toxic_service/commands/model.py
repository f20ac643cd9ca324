"""`toxic-service model import`: a Keras model (.h5/.keras) -> a verified bundle (model.tflite + metadata.json).

The bundle records the checksum of the vocabulary given with --vocab (a
SQLite store file, a dump, or the Keras tokenizer itself), so the service
refuses to pair the model with any other vocabulary. The converted model is
checked against the source model on sample inputs and nothing is written when
they differ by more than the tolerance.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
import numpy as np

from toxic_service.bundle import JIGSAW_LABELS, TFLITE_FILE, BundleMetadata, TokenizerConfig
from toxic_service.errors import BadRequest, BundleError

QUANTIZED_TOLERANCE = 0.05  # int8 weights: tox-block measured max |diff| 0.021 (docs/models.md)


@click.group("model")
def command() -> None:
    """Import a Keras model as a servable bundle."""


def _labels(value: str | None, n_outputs: int) -> tuple[str, ...]:
    if value is None:
        if n_outputs != len(JIGSAW_LABELS):
            raise BadRequest(f"the model has {n_outputs} outputs: name them with --labels (comma-separated, in output order)")
        return JIGSAW_LABELS
    labels = tuple(part.strip() for part in value.split(","))
    if len(labels) != n_outputs or not all(labels) or len(set(labels)) != len(labels):
        raise BadRequest(f"--labels must name {n_outputs} distinct labels in output order (got {value!r})")
    return labels


@command.command("import")
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--vocab",
    "vocab_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The vocabulary the model was trained with: SQLite store file, `vocab export` dump, or Keras tokenizer (JSON/pickle).",
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Bundle directory to write."
)
@click.option(
    "--tokenizer",
    "tokenizer_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Keras tokenizer to take lower/filters/split/num_words/oov from (default: --vocab when it is one, else Keras defaults).",
)
@click.option(
    "--labels", default=None, help="Comma-separated output labels (default: the six Jigsaw labels for a 6-output model)."
)
@click.option("--trained-labels", default=None, help="Comma-separated labels the model really learned (default: all).")
@click.option("--source", default=None, help="Where the model comes from (recorded in metadata).")
@click.option("--licence", default="unknown", show_default=True, help="The model's licence (recorded in metadata).")
@click.option(
    "--samples",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Real comments, one per line, to verify the conversion on (plus random sequences).",
)
@click.option("--sample-size", type=click.IntRange(1, 100_000), default=512, show_default=True)
@click.option(
    "--quantize", is_flag=True, help=f"Store weights as int8 (about 2.5x smaller; verified within {QUANTIZED_TOLERANCE})."
)
@click.option(
    "--tolerance",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Largest allowed |TFLite - Keras| score difference (default 1e-4, or 0.05 with --quantize).",
)
@click.option("--with-keras", is_flag=True, help="Also store the rebuilt model as model.keras (for the keras runtime).")
@click.option(
    "--unrolled",
    is_flag=True,
    help="Convert the unrolled Keras rebuild even where the faster word-projection graph applies (Embedding -> LSTM).",
)
def import_command(
    model_file,
    vocab_file,
    out_dir,
    tokenizer_file,
    labels,
    trained_labels,
    source,
    licence,
    samples,
    sample_size,
    quantize,
    tolerance,
    with_keras,
    unrolled,
) -> None:
    """Convert MODEL_FILE (Keras .h5 or .keras) into a bundle at --out, tied to --vocab."""
    from toxic_service.bundle import write_bundle
    from toxic_service.importers import keras_model
    from toxic_service.importers.keras_tokenizer import load_keras_tokenizer
    from toxic_service.importers.samples import encode_texts, random_sequences, read_sample_texts
    from toxic_service.importers.sources import load_any

    started = time.monotonic()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    vocab = load_any(vocab_file)
    spec = load_keras_tokenizer(tokenizer_file) if tokenizer_file else vocab.tokenizer
    click.echo(f"vocabulary: {len(vocab.pairs)} words, {vocab.checksum} ({vocab.source})", err=True)

    click.echo(f"loading {model_file}", err=True)
    source_model = keras_model.load_keras_model(model_file)
    shape = keras_model.model_shape(source_model)
    label_names = _labels(labels, shape.n_outputs)
    trained = tuple(t.strip() for t in trained_labels.split(",")) if trained_labels else label_names
    if not set(trained) <= set(label_names):
        raise BadRequest(f"--trained-labels names labels not in {label_names}")
    if spec is not None and spec.max_len is not None and spec.max_len != shape.max_len:
        raise BundleError(f"the tokenizer pads to {spec.max_len} but the model takes {shape.max_len} indexes")
    max_index = max(i for _, i in vocab.pairs)
    meta = BundleMetadata(
        labels=label_names,
        trained_labels=trained,
        max_len=shape.max_len,
        vocabulary_checksum=vocab.checksum,
        vocabulary_size=len(vocab.pairs),
        vocabulary_source=vocab.source,
        index_base=vocab.index_base,
        oov_index=spec.oov_index if spec else None,
        num_words=spec.num_words if spec else None,
        tokenizer=spec.tokenizer if spec else TokenizerConfig(),
        model_source=source or model_file.name,
        model_licence=licence,
    )

    tflite_bytes = _convert(source_model, quantize=quantize, unrolled=unrolled)

    mapping = dict(vocab.pairs)
    parts = [random_sequences(np.array(sorted(mapping.values())), shape.max_len, 64)]
    if samples:
        parts.insert(0, encode_texts(read_sample_texts(samples, sample_size), mapping, meta))
    x = np.concatenate(parts)
    if max_index >= _embedding_rows(source_model):
        raise BundleError(
            f"the vocabulary has index {max_index} but the model's embedding has {_embedding_rows(source_model)} rows"
        )
    limit = tolerance if tolerance is not None else (QUANTIZED_TOLERANCE if quantize else keras_model.DEFAULT_TOLERANCE)
    diff = keras_model.verify(source_model, tflite_bytes, x, tolerance=limit)
    click.echo(
        f"verified: TFLite equals the source model within {diff:.2g} (tolerance {limit:g}) on {len(x)} inputs"
        f"{' (' + str(len(x) - 64) + ' real comments)' if samples else ' (random sequences only: pass --samples)'}",
        err=True,
    )
    # model.keras must load with stock Keras: the same rebuild without the conversion-only LSTM class.
    keras_copy = keras_model.rebuild_for_tflite(source_model, one_matmul=False) if with_keras else None
    written = write_bundle(out_dir, tflite_bytes=tflite_bytes, keras_model=keras_copy, metadata=meta)
    size = (out_dir / TFLITE_FILE).stat().st_size
    click.echo(
        f"wrote {out_dir} (model.tflite {size / 1e6:.1f} MB{', int8 weights' if quantize else ''}; "
        f"files {', '.join(sorted(written.model_files))}) in {time.monotonic() - started:.0f} s"
    )


def _convert(source_model, *, quantize: bool, unrolled: bool) -> bytes:
    """TFLite bytes: the word-projection graph where it applies, else the unrolled rebuild."""
    from toxic_service.importers import keras_model, word_projection

    chain = "--unrolled given" if unrolled else word_projection.lowerable(source_model)
    if not isinstance(chain, str):
        click.echo(f"converting {word_projection.describe(chain)} to a word-projection graph (up to a minute)", err=True)
        return word_projection.convert(chain, quantize=quantize)
    click.echo(f"rebuilding with unrolled recurrent layers and an int32 input (no word-projection graph: {chain})", err=True)
    rebuilt = keras_model.rebuild_for_tflite(source_model)
    click.echo("converting to TFLite (built-in ops only; an unrolled LSTM takes up to a minute)", err=True)
    return keras_model.to_tflite(rebuilt, quantize=quantize)


def _embedding_rows(model) -> int:
    """Rows of the first Embedding layer (indexes must stay below it), or a large number when there is none."""
    for layer in model.layers:
        if type(layer).__name__ == "Embedding":
            return int(layer.input_dim)
    return 1 << 31
