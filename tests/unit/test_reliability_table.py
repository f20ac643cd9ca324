"""tools/reliability_table.py: the docs table of the two reliability profiles, made from their artifact files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "reliability_table.py"
spec = importlib.util.spec_from_file_location("reliability_table", TOOL)
reliability_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reliability_table)


def _figures(path: Path, profile: str, rows: list[tuple[str, object, bool | None]]) -> Path:
    doc = {"profile": profile, "when": f"{profile}-time",
           "figures": [{"figure": n, "value": v, "target": "t", "met": m, "note": ""} for n, v, m in rows]}
    path.write_text(json.dumps(doc))
    return path


def test_rows_of_both_profiles_line_up_and_verdicts_show(tmp_path, monkeypatch):
    short = _figures(tmp_path / "s.json", "short", [("maximum (3 s each)", "448 req/s", None), ("failed", 0, True)])
    full = _figures(tmp_path / "f.json", "full", [("maximum (10 s each)", "450 req/s", None), ("failed", 2, False),
                                                  ("only in full", "x", True)])
    doc = tmp_path / "reliability.md"
    doc.write_text(f"before\n{reliability_table.START}\nold table\n{reliability_table.END}\nafter\n")
    monkeypatch.setattr(reliability_table, "DOC", doc)
    assert reliability_table.main([str(short), str(full), "--write"]) == 0
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old table" not in text
    assert "| maximum (N s each) | 448 req/s | 450 req/s | t | - / - |" in text
    assert "| failed | 0 | 2 | t | yes / **NO** |" in text
    assert "| only in full | not run | x | t | - / yes |" in text


def test_wrong_or_missing_files_are_refused_and_the_doc_is_untouched(tmp_path, monkeypatch):
    doc = tmp_path / "reliability.md"
    doc.write_text("no markers\n")
    monkeypatch.setattr(reliability_table, "DOC", doc)
    short = _figures(tmp_path / "s.json", "short", [("failed", 0, True)])
    for args in ([str(tmp_path / "missing.json"), str(short)], [str(short), str(short)]):
        with pytest.raises(SystemExit) as exit_info:
            reliability_table.main([*args, "--write"])
        assert exit_info.value.code == 2
    full = _figures(tmp_path / "f.json", "full", [("failed", 0, True)])
    assert reliability_table.main([str(short), str(full), "--write"]) == 1  # no markers in the doc
    assert doc.read_text() == "no markers\n"
