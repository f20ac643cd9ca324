"""The feedback round trip on real gunicorn: suggestscore -> `feedback export` -> `toxic-service train` reads it.

Also: a worker SIGKILLed right after its 200 loses nothing (the row was committed before the answer),
the key's name is stored (not the key), doNotStore rows are skipped and counted by the export, and
`feedback stats` counts what was sent.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("pyarrow")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gunicorn_server import TOXIC_SERVICE, base_env, copy_store, start  # noqa: E402
from test_importers import make_kumo_dir  # noqa: E402

WORDS = ["the", "you", "are", "a", "idiot", "stupid", "thanks", "good", "edit", "great"]
FILLER = ("the", "you", "are", "a", "thanks", "good", "edit", "great")
RUDE = ("idiot", "stupid")
ROWS, NOT_STORED = 60, 5


def _texts() -> list[tuple[str, int]]:
    """Deterministic comments: a rude one holds a rude word (INSULT 1), a polite one none (INSULT 0)."""
    out = []
    for i in range(ROWS):
        words = [FILLER[(i * 3 + j) % len(FILLER)] for j in range(3 + i % 4)]
        rude = i % 2
        if rude:
            words.insert(i % len(words), RUDE[(i // 2) % 2])
        out.append((" ".join(words) + f" {i}", rude))
    return out


def _post(url: str, path: str, body: dict) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TOXIC_SERVICE, *args], env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def served_feedback(tiny_fixtures, tmp_path_factory):
    root = tmp_path_factory.mktemp("feedback")
    env = base_env(tiny_fixtures.bundle_dir, copy_store(tiny_fixtures.sqlite_path, root / "store"), root)
    env.update(TOXIC_FEEDBACK_DB=str(root / "shared" / "feedback.sqlite"), TOXIC_API_KEYS_FILE=str(root / "keys.json"))
    created = _cli(env, "keys", "create", "forum-bot", "--qps", "1000")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    server = start(env, root / "server.log", workers=2)
    try:
        path = f"/v1alpha1/comments:suggestscore?key={key}"
        for i, (text, rude) in enumerate(_texts()):
            status, body = _post(server.url, path, {
                "comment": {"text": text},
                "attributeScores": {"INSULT": {"summaryScore": {"value": float(rude)}}},
                "communityId": f"community-{i % 3}",
                "clientToken": f"t{i}",
                "doNotStore": i < NOT_STORED,
            })
            assert (status, body) == (200, {"clientToken": f"t{i}", "detectedLanguages": ["en"]}), body
        # The killed worker: every worker gets SIGKILL the moment the 200 is in.
        workers = server.worker_pids()
        status, _ = _post(server.url, path, {
            "comment": {"text": "the last word before the crash"},
            "attributeScores": {"TOXICITY": {"summaryScore": {"value": 1}}},
        })
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        assert status == 200
        server.wait_ready(60)  # the master replaces them
        yield server, env, root, key
    finally:
        server.stop()


def _stored(root: Path) -> list[tuple]:
    with sqlite3.connect(root / "shared" / "feedback.sqlite") as conn:
        return conn.execute("SELECT key_name, comment_text FROM suggestion ORDER BY id").fetchall()


def test_a_suggestion_answered_200_survives_its_worker_being_killed(served_feedback):
    server, _, root, _ = served_feedback
    rows = _stored(root)
    assert rows[-1] == ("forum-bot", "the last word before the crash")
    assert len(rows) == ROWS + 1


def test_the_key_name_is_stored_never_the_key(served_feedback):
    _, _, root, key = served_feedback
    assert {name for name, _ in _stored(root)} == {"forum-bot"}
    for file in (root / "shared").iterdir():
        assert key.encode() not in file.read_bytes()


def test_stats_count_per_attribute_and_community(served_feedback):
    _, env, _, _ = served_feedback
    result = _cli(env, "feedback", "stats", "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["suggestions"] == ROWS + 1 and stats["without_text"] == NOT_STORED
    assert stats["attributes"]["INSULT"] == {"suggestions": ROWS, "yes": ROWS // 2}
    assert stats["communities"]["community-0"] == ROWS // 3 and stats["communities"]["(none)"] == 1
    agreement = stats["agreement"]["INSULT"]
    assert agreement["compared"] == ROWS - NOT_STORED and 0 <= agreement["fraction"] <= 1


def test_export_then_train_reads_the_exported_rows(served_feedback):
    _, env, root, _ = served_feedback
    out = root / "export" / "feedback.csv"
    result = _cli(env, "feedback", "export", "--out", str(out), "--attribute", "INSULT")
    assert result.returncode == 0, result.stderr
    assert f"wrote {ROWS - NOT_STORED} rows" in result.stdout
    assert f"skipped {NOT_STORED} suggestions stored without their text" in result.stdout
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["id", "comment_text", "insult"]
    expected = {text: str(rude) for text, rude in _texts()[NOT_STORED:]}
    assert {row["comment_text"]: row["insult"] for row in rows} == expected

    make_kumo_dir(root / "kumo", WORDS, dim=16)
    train_env = dict(env, TF_CPP_MIN_LOG_LEVEL="2")
    train_env.pop("TF_USE_LEGACY_KERAS", None)
    model = root / "trained" / "model"
    trained = subprocess.run(
        [TOXIC_SERVICE, "train", str(out), "--kumo", str(root / "kumo"), "--out", str(model), "--epochs", "3",
         "--batch-size", "16", "--vocab-size", "10", "--holdout", "0.25", "--seed", "3"],
        env=train_env, capture_output=True, text=True, timeout=900,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    # train consumed exactly the exported rows, and learned the one label they carry.
    assert f"read {ROWS - NOT_STORED} comments from {out}; labels present: insult" in trained.stderr
    report = json.loads((model / "train_report.json").read_text())
    assert report["n_train"] + report["n_holdout"] == ROWS - NOT_STORED
    assert report["auc"]["insult"] is not None and report["auc"]["toxic"] is None
