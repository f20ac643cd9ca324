"""fab deploy-model's --vocab check reads the checksum through the app's own reader (vocab/meta.py)."""

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from invoke.exceptions import Exit
from toxic_service.vocab.sqlite import write_sqlite

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import fabfile  # noqa: E402


def test_an_sqlite_vocabulary_gives_the_checksum_it_records(tmp_path: Path) -> None:
    info = write_sqlite(tmp_path / "vocab.sqlite", [("hello", 1), ("world", 2)], source="test", index_base=1)
    assert fabfile.vocabulary_checksum(tmp_path / "vocab.sqlite") == info.checksum


def test_a_file_of_another_format_has_no_recorded_checksum(tmp_path: Path) -> None:
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text(json.dumps({"class_name": "Tokenizer", "config": {}}))
    assert fabfile.vocabulary_checksum(tokenizer) is None


@pytest.mark.parametrize("damage", ["no meta table", "meta lacks checksum"])
def test_an_sqlite_file_without_its_metadata_is_refused_by_name(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "words.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE words(word TEXT PRIMARY KEY, idx INTEGER)")
    if damage == "meta lacks checksum":
        conn.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("size", "0"), ("source", "x"), ("index_base", "1")])
    conn.commit()
    conn.close()
    with pytest.raises(Exit) as caught:
        fabfile.vocabulary_checksum(path)
    message = str(caught.value.message)
    assert f"--vocab {path}" in message
    assert ("has no meta table" if damage == "no meta table" else "lacks checksum") in message
