"""The feedback store (durability, WAL, size cap, doNotStore) and comments:suggestscore's validation.

Every bad request must get Google's error shape with the field named, and leave the store untouched.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from toxic_service.api import create_app
from toxic_service.feedback import feedback_store
from toxic_service.feedback.store import (
    AttributeSuggestion,
    FeedbackStore,
    FeedbackStoreFull,
    FeedbackUnavailable,
    SpanSuggestion,
    Suggestion,
)
from toxic_service.perspective.analyze import MAX_TEXT_BYTES
from toxic_service.perspective.suggest import suggest_score

SUGGEST = "/v1alpha1/comments:suggestscore"


def _suggestion(text: str | None = "you idiot", **kw) -> Suggestion:
    attributes = kw.pop("attributes", (AttributeSuggestion("TOXICITY", 0.9, (SpanSuggestion(4, 9, 1.0),)),))
    return Suggestion(text=text, text_type="PLAIN_TEXT", attributes=attributes, **kw)


def _rows(path: Path) -> list[tuple]:
    """The stored rows, read through a connection of our own (not the store's)."""
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT id, comment_text FROM suggestion ORDER BY id").fetchall()


# --- the store ---------------------------------------------------------------------------------------------


def test_the_store_is_in_wal_mode_with_full_sync(tmp_path):
    store = FeedbackStore(tmp_path / "f.sqlite", 1 << 20)
    store.add(_suggestion())
    with sqlite3.connect(tmp_path / "f.sqlite") as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent in the file
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_a_suggestion_is_committed_before_add_returns(tmp_path):
    path = tmp_path / "f.sqlite"
    store = FeedbackStore(path, 1 << 20)
    row_id = store.add(_suggestion(key_name="forum", community_id="c1", session_id="s", client_token="t"))
    # A second connection sees only committed data.
    assert _rows(path) == [(row_id, "you idiot")]
    [stored] = list(FeedbackStore(path, 1 << 20).suggestions())
    assert (stored.key_name, stored.community_id, stored.session_id, stored.client_token) == ("forum", "c1", "s", "t")
    assert stored.attributes == (AttributeSuggestion("TOXICITY", 0.9, (SpanSuggestion(4, 9, 1.0),)),)
    assert stored.created_at.endswith("Z")


def test_a_process_killed_right_after_add_loses_nothing(tmp_path):
    # The process SIGKILLs itself the moment add() returns: no close, no atexit, no flush of ours.
    path = tmp_path / "f.sqlite"
    code = textwrap.dedent(
        f"""
        import os, signal
        from toxic_service.feedback.store import AttributeSuggestion, FeedbackStore, Suggestion
        store = FeedbackStore({str(path)!r}, 1 << 20)
        for i in range(5):
            store.add(Suggestion(text=f"comment {{i}}", text_type="PLAIN_TEXT",
                                 attributes=(AttributeSuggestion("INSULT", 1.0),)))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    assert [text for _, text in _rows(path)] == [f"comment {i}" for i in range(5)]


def test_several_processes_write_at_once_and_every_row_lands(tmp_path):
    path = tmp_path / "f.sqlite"
    code = textwrap.dedent(
        f"""
        import sys
        from toxic_service.feedback.store import AttributeSuggestion, FeedbackStore, Suggestion
        store = FeedbackStore({str(path)!r}, 1 << 22)
        for i in range(40):
            store.add(Suggestion(text=f"{{sys.argv[1]}}-{{i}}", text_type="PLAIN_TEXT",
                                 attributes=(AttributeSuggestion("INSULT", 0.0),)))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, f"w{n}"], stderr=subprocess.PIPE) for n in range(3)]
    for proc in procs:
        assert proc.wait(120) == 0, proc.stderr.read()
    assert len(_rows(path)) == 120


def test_a_full_store_refuses_whole_suggestions_and_keeps_the_rest(tmp_path):
    path = tmp_path / "f.sqlite"
    store = FeedbackStore(path, 65_536)  # 16 pages of 4 KiB
    stored = 0
    with pytest.raises(FeedbackStoreFull, match="TOXIC_FEEDBACK_MAX_BYTES=65536"):
        for i in range(200):
            store.add(_suggestion("x" * 3000 + str(i), attributes=tuple(
                AttributeSuggestion(f"A{j}", 0.5, tuple(SpanSuggestion(0, 5, 0.5) for _ in range(20))) for j in range(6)
            )))
            stored += 1
    assert 0 < stored < 200
    assert store.size_bytes() <= 65_536
    with sqlite3.connect(path) as conn:
        # Nothing half-written: exactly the acknowledged suggestions, each with all its 6 x 21 scores.
        assert conn.execute("SELECT COUNT(*) FROM suggestion").fetchone()[0] == stored
        assert conn.execute("SELECT COUNT(*) FROM suggested_score").fetchone()[0] == stored * 6 * 21
    assert len(list(store.suggestions())) == stored  # still readable, for the export that clears it


def test_do_not_store_keeps_the_scores_and_drops_the_text(tiny_settings, tmp_path):
    settings = tiny_settings.replace(feedback_db=tmp_path / "f.sqlite")
    secret = "my very private comment"
    body = {"comment": {"text": secret}, "doNotStore": True, "attributeScores": {"TOXICITY": {"summaryScore": {"value": 0}}}}
    assert suggest_score(body, "forum", settings) == {"detectedLanguages": ["en"]}
    [stored] = list(feedback_store(settings).suggestions())
    assert stored.text is None and stored.key_name == "forum"
    assert stored.attributes == (AttributeSuggestion("TOXICITY", 0.0),)
    for file in tmp_path.iterdir():  # the database, its WAL and shared-memory file
        assert secret.encode() not in file.read_bytes(), file


def test_a_file_that_is_not_a_feedback_store_is_refused(tiny_sqlite_path, tmp_path):
    vocab = tmp_path / "vocab.sqlite"
    vocab.write_bytes(tiny_sqlite_path.read_bytes())
    with pytest.raises(FeedbackUnavailable, match="not a feedback store"):
        list(FeedbackStore(vocab, 1 << 20).suggestions())


# --- comments:suggestscore over HTTP -------------------------------------------------------------------------


@pytest.fixture()
def served(tiny_settings, tmp_path):
    settings = tiny_settings.replace(feedback_db=tmp_path / "feedback.sqlite")
    return create_app(settings).test_client(), settings.feedback_file


def _ok_body(**changes) -> dict:
    body = {
        "comment": {"text": "you are an idiot 😀"},
        "attributeScores": {
            "INSULT": {"summaryScore": {"value": 1}, "spanScores": [{"begin": 0, "end": 19, "score": {"value": 1}}]}
        },
        "languages": ["en"],
        "clientToken": "tok-1",
        "communityId": "forum",
        "sessionId": "s1",
    }
    body.update(changes)
    return body


def test_a_good_suggestion_is_stored_and_answered_as_perspective(served):
    client, path = served
    response = client.post(SUGGEST, json=_ok_body())
    assert response.status_code == 200, response.data
    # SuggestCommentScoreResponse: clientToken echoed, requestedLanguages as given.
    assert response.get_json() == {"clientToken": "tok-1", "requestedLanguages": ["en"]}
    # Without languages: the bundle's, as detectedLanguages (there is no detector; analyze answers the same).
    response = client.post(SUGGEST, json={k: v for k, v in _ok_body().items() if k != "languages"})
    assert response.get_json() == {"clientToken": "tok-1", "detectedLanguages": ["en"]}
    [stored, _] = list(FeedbackStore(path, 1 << 20).suggestions())
    # "you are an idiot " is 17 units, the emoji 2: the span [0, 19) ends exactly at the text's end.
    assert stored.attributes == (AttributeSuggestion("INSULT", 1.0, (SpanSuggestion(0, 19, 1.0),)),)
    assert (stored.community_id, stored.session_id, stored.client_token) == ("forum", "s1", "tok-1")


def _scores(entry) -> dict:
    return {"attributeScores": {"INSULT": entry}}


def _span(**span) -> dict:
    return _scores({"spanScores": [span]})


BAD = {
    # kind: (body or raw bytes, the field the error must name)
    "malformed JSON": (b'{"comment": ', None),
    "body not an object": (b"[1, 2]", None),
    "unknown field": (_ok_body(requestedAttributes={}), "requestedAttributes"),
    "no comment": ({k: v for k, v in _ok_body().items() if k != "comment"}, "comment"),
    "comment not an object": (_ok_body(comment="hi"), "comment"),
    "comment.text not a string": (_ok_body(comment={"text": 5}), "comment.text"),
    "comment.text missing": (_ok_body(comment={"type": "PLAIN_TEXT"}), "comment.text"),
    "empty text": (_ok_body(comment={"text": ""}), "comment.text"),
    "whitespace text": (_ok_body(comment={"text": " \n\t "}), "comment.text"),
    "text over 20 KB": (_ok_body(comment={"text": "é" * (MAX_TEXT_BYTES // 2 + 1)}), "comment.text"),
    "unsupported comment.type": (_ok_body(comment={"text": "hi", "type": "MARKDOWN"}), "comment.type"),
    "no attributeScores": ({k: v for k, v in _ok_body().items() if k != "attributeScores"}, "attributeScores"),
    "attributeScores not an object": (_ok_body(attributeScores=["INSULT"]), "attributeScores"),
    "empty attributeScores": (_ok_body(attributeScores={}), "attributeScores"),
    "empty attribute entry": (_ok_body(**_scores({})), "attributeScores.INSULT"),
    "unknown attribute": (_ok_body(attributeScores={"FLIRTATION": {"summaryScore": {"value": 1}}}), "attributeScores.FLIRTATION"),
    "score above 1": (_ok_body(**_scores({"summaryScore": {"value": 1.5}})), "attributeScores.INSULT.summaryScore.value"),
    "score below 0": (_ok_body(**_scores({"summaryScore": {"value": -0.1}})), "attributeScores.INSULT.summaryScore.value"),
    "score not a number": (_ok_body(**_scores({"summaryScore": {"value": "0.5"}})), "attributeScores.INSULT.summaryScore.value"),
    "score a boolean": (_ok_body(**_scores({"summaryScore": {"value": True}})), "attributeScores.INSULT.summaryScore.value"),
    "score value missing": (_ok_body(**_scores({"summaryScore": {}})), "attributeScores.INSULT.summaryScore.value"),
    "score type not PROBABILITY": (
        _ok_body(**_scores({"summaryScore": {"value": 0.5, "type": "STD_DEV_SCORE"}})),
        "attributeScores.INSULT.summaryScore.type",
    ),
    "spanScores not an array": (_ok_body(**_scores({"spanScores": {"begin": 0}})), "attributeScores.INSULT.spanScores"),
    "span without begin": (_ok_body(**_span(end=3, score={"value": 1})), "attributeScores.INSULT.spanScores[0].begin"),
    "span without end": (_ok_body(**_span(begin=0, score={"value": 1})), "attributeScores.INSULT.spanScores[0].end"),
    "span begin not an integer": (
        _ok_body(**_span(begin=0.5, end=3, score={"value": 1})),
        "attributeScores.INSULT.spanScores[0].begin",
    ),
    "span end past the text (UTF-16)": (
        _ok_body(**_span(begin=0, end=20, score={"value": 1})),
        "attributeScores.INSULT.spanScores[0]",
    ),
    "span begin negative": (_ok_body(**_span(begin=-1, end=3, score={"value": 1})), "attributeScores.INSULT.spanScores[0]"),
    "span empty (begin == end)": (_ok_body(**_span(begin=3, end=3, score={"value": 1})), "attributeScores.INSULT.spanScores[0]"),
    "span without score": (_ok_body(**_span(begin=0, end=3)), "attributeScores.INSULT.spanScores[0].score"),
    "span score above 1": (
        _ok_body(**_span(begin=0, end=3, score={"value": 2})),
        "attributeScores.INSULT.spanScores[0].score.value",
    ),
    "languages not an array": (_ok_body(languages="en"), "languages"),
    "language not a string": (_ok_body(languages=[1]), "languages[0]"),
    "unsupported language": (_ok_body(languages=["de"]), "languages"),
    "communityId not a string": (_ok_body(communityId=7), "communityId"),
    "clientToken not a string": (_ok_body(clientToken=["t"]), "clientToken"),
    "sessionId not a string": (_ok_body(sessionId={"id": 1}), "sessionId"),
    "sessionId too long": (_ok_body(sessionId="s" * 513), "sessionId"),
    "doNotStore not a boolean": (_ok_body(doNotStore="yes"), "doNotStore"),
    "context with both forms": (
        _ok_body(context={"entries": [{"text": "a"}], "articleAndParentComment": {"article": {"text": "b"}}}),
        "context",
    ),
    "context.entries not an array": (_ok_body(context={"entries": "a"}), "context.entries"),
    "context entry text not a string": (_ok_body(context={"entries": [{"text": 1}]}), "context.entries[0].text"),
    "a field in both spellings": (_ok_body(attribute_scores={"INSULT": {"summaryScore": {"value": 1}}}), "attributeScores"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_suggestion_gets_googles_invalid_argument_and_stores_nothing(served, kind):
    client, path = served
    body, field = BAD[kind]
    if isinstance(body, bytes):
        response = client.post(SUGGEST, data=body, content_type="application/json")
    else:
        response = client.post(SUGGEST, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400, (kind, response.data)
    error = response.get_json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT"), error
    if field is not None:
        assert error["message"].startswith(field) or field in error["message"], error
        violations = [v for d in error.get("details", []) for v in d.get("fieldViolations", [])]
        assert [v["field"] for v in violations] == [field], error
    assert not path.exists() or _rows(path) == []
    # The service is still healthy: a good suggestion goes through afterwards.
    assert client.post(SUGGEST, json=_ok_body()).status_code == 200


def test_at_least_a_dozen_kinds_of_bad_input_are_covered():
    assert len(BAD) >= 12


def test_an_unknown_attribute_error_lists_the_supported_ones(served):
    client, _ = served
    error = client.post(SUGGEST, json=_ok_body(attributeScores={"FLIRTATION": {"summaryScore": {"value": 1}}})).get_json()
    assert "TOXICITY" in error["error"]["message"] and "INSULT" in error["error"]["message"]


def test_an_unsupported_language_is_perspectives_language_error(served):
    client, _ = served
    details = client.post(SUGGEST, json=_ok_body(languages=["de"])).get_json()["error"]["details"]
    assert any(d.get("errorType") == "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE" for d in details)


def test_a_full_store_answers_resource_exhausted_and_keeps_serving(tiny_settings, tmp_path):
    settings = tiny_settings.replace(feedback_db=tmp_path / "f.sqlite", feedback_max_bytes=65_536)
    client = create_app(settings).test_client()
    statuses = [client.post(SUGGEST, json=_ok_body(comment={"text": "x" * 9000 + str(i)})).status_code for i in range(40)]
    assert 200 in statuses and statuses[-1] == 429, statuses
    refused = client.post(SUGGEST, json=_ok_body(comment={"text": "y" * 9000}))
    error = refused.get_json()["error"]
    assert (refused.status_code, error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert "full" in error["message"] and str(tmp_path) not in error["message"]  # no path to the client
    assert "Retry-After" not in refused.headers  # retrying does not help until an operator clears it
    assert len(_rows(settings.feedback_file)) == statuses.count(200)
    assert client.get("/readyz").status_code == 200


def test_the_protos_snake_case_names_are_accepted_too(served):
    client, path = served
    body = {"comment": {"text": "you idiot"}, "client_token": "t", "community_id": "c", "do_not_store": False,
            "attribute_scores": {"INSULT": {"summary_score": {"value": 1}, "span_scores": [
                {"begin": 4, "end": 9, "score": {"value": 1}}]}}}
    response = client.post(SUGGEST, json=body)
    assert (response.status_code, response.get_json()) == (200, {"clientToken": "t", "detectedLanguages": ["en"]})
    [stored] = list(FeedbackStore(path, 1 << 20).suggestions())
    assert stored.community_id == "c" and stored.attributes[0].spans == (SpanSuggestion(4, 9, 1.0),)


# --- export ------------------------------------------------------------------------------------------------


def test_export_writes_jigsaw_rows_thresholded_at_one_half_and_counts_what_it_leaves_out(tmp_path):
    from toxic_service.feedback.export import export_csv

    mapping = {"TOXICITY": "toxic", "INSULT": "insult"}
    suggestions = [
        Suggestion(text="<p>you <b>idiot</b></p>", text_type="HTML", id=1, attributes=(
            AttributeSuggestion("TOXICITY", 0.5), AttributeSuggestion("INSULT", None, (SpanSuggestion(9, 14, 0.8),)))),
        Suggestion(text="thanks", text_type="PLAIN_TEXT", id=2, attributes=(
            AttributeSuggestion("TOXICITY", 0.49), AttributeSuggestion("INSULT", 0.0))),
        Suggestion(text=None, text_type="PLAIN_TEXT", id=3, attributes=(AttributeSuggestion("TOXICITY", 1.0),)),
        Suggestion(text="only toxicity", text_type="PLAIN_TEXT", id=4, attributes=(AttributeSuggestion("TOXICITY", 1.0),)),
        Suggestion(text="old attribute", text_type="PLAIN_TEXT", id=5, attributes=(
            AttributeSuggestion("TOXICITY", 0.0), AttributeSuggestion("INSULT", 0.0), AttributeSuggestion("FLIRTATION", 1.0))),
    ]
    result = export_csv(suggestions, mapping, tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text().splitlines() == [
        "id,comment_text,toxic,insult",
        "feedback-1,you idiot,1,1",  # markup stripped; 0.5 is yes; a span-only attribute takes its highest span
        "feedback-2,thanks,0,0",
        "feedback-5,old attribute,0,0",
    ]
    assert (result.rows, result.skipped_no_text, dict(result.skipped_missing)) == (3, 1, {"INSULT": 1})
    assert dict(result.unmapped) == {"FLIRTATION": 1}
    only = export_csv(suggestions, mapping, tmp_path / "toxic.csv", ["TOXICITY"])
    assert only.rows == 4 and (tmp_path / "toxic.csv").read_text().splitlines()[0] == "id,comment_text,toxic"


def test_a_store_that_cannot_be_opened_is_unavailable_without_naming_the_path(tiny_settings, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    settings = tiny_settings.replace(feedback_db=blocker / "feedback.sqlite")
    client = create_app(settings).test_client()
    response = client.post(SUGGEST, json=_ok_body())
    error = response.get_json()["error"]
    assert (response.status_code, error["status"]) == (503, "UNAVAILABLE"), error
    assert str(tmp_path) not in json.dumps(error)
    assert client.get("/readyz").status_code == 200  # scoring is unaffected


def test_export_without_a_store_is_one_clear_line_and_exit_1(tiny_settings, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOXIC_")}
    env.update(TOXIC_FEEDBACK_DB=str(tmp_path / "none.sqlite"), TOXIC_BUNDLE=str(tiny_settings.bundle_dir))
    result = subprocess.run([sys.executable, "-m", "toxic_service", "feedback", "export", "--out", str(tmp_path / "o.csv")],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'none.sqlite'}: no feedback store here (no suggestion stored yet?)"
    assert not (tmp_path / "none.sqlite").exists() and not (tmp_path / "o.csv").exists()
