"""spanAnnotations: sentences, UTF-16 offsets (emoji, combining marks, CJK), HTML offsets, one model call."""

from __future__ import annotations

import pytest
from toxic_service.api import create_app
from toxic_service.perspective.spans import (
    group_bounds,
    plain,
    score_with_spans,
    sentence_bounds,
    strip_html,
    utf16_offsets,
)

PATH = "/v1alpha1/comments:analyze"


def units(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def utf16_slice(s: str, begin: int, end: int) -> str:
    """What JavaScript's s.substring(begin, end) gives: the check that offsets are UTF-16 code units."""
    return s.encode("utf-16-le")[2 * begin : 2 * end].decode("utf-16-le")


@pytest.fixture(scope="module")
def app(tiny_settings, tmp_path_factory):
    return create_app(tiny_settings.replace(feedback_db=tmp_path_factory.mktemp("fb") / "f.sqlite"))


@pytest.fixture()
def client(app):
    return app.test_client()


def spans_of(client, text: str, kind: str = "PLAIN_TEXT", attribute: str = "INSULT") -> list[dict]:
    response = client.post(PATH, json={"comment": {"text": text, "type": kind}, "spanAnnotations": True,
                                       "requestedAttributes": {attribute: {}}})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["attributeScores"][attribute]["spanScores"]


def texts(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_bounds(text)]


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Thank you. You idiot!", ["Thank you.", "You idiot!"]),
        ("  padded   out.  ", ["padded   out."]),
        ("no end at all", ["no end at all"]),
        ('He said "stop." Then left?! Yes…', ['He said "stop."', "Then left?!", "Yes…"]),
        ("3.14 is pi. ok", ["3.14 is pi.", "ok"]),  # a dot inside a number does not end a sentence
        ("你好。你是白痴！谢谢", ["你好。", "你是白痴！", "谢谢"]),  # CJK stops need no space
        ("line one\nline two\n\n  line three", ["line one", "line two", "line three"]),
        ("", []),
        (" \n ", []),
    ],
)
def test_sentence_rule(text, sentences):
    assert texts(text) == sentences


def test_utf16_offsets_count_surrogate_pairs_as_two():
    s = "a🙂é\u0301中"
    assert utf16_offsets(s) == [0, 1, 3, 4, 5, 6]
    assert utf16_offsets(s)[-1] == units(s)


@pytest.mark.parametrize(
    "text",
    [
        "You idiot 🙂🙂. Thank you 👍🏽!",  # emoji: surrogate pairs, a skin-tone modifier
        "Cafe\u0301 idiot. Zoe\u0308 is nice.",  # combining marks (decomposed é, ë)
        "谢谢你。你是白痴！ you idiot. 🙂",  # CJK and emoji together
        "𝓎𝑜𝓊 idiot. 🏴‍☠️ ok.",  # astral letters and a ZWJ sequence
    ],
)
def test_spans_point_at_the_sentences_in_utf16_units(client, text):
    spans = spans_of(client, text)
    expected = texts(text)
    assert [utf16_slice(text, s["begin"], s["end"]) for s in spans] == expected
    assert all(0 <= s["begin"] < s["end"] <= units(text) for s in spans)
    # Code point indexes would differ from these whenever an astral character comes first.
    if any(ord(c) > 0xFFFF for c in text[: sentence_bounds(text)[-1][0]]):
        last = sentence_bounds(text)[-1]
        assert spans[-1]["begin"] != last[0]


def test_a_combining_mark_stays_with_its_letter(client):
    text = "Thank you.\u0301 You idiot."  # a mark right after the full stop: no sentence end there
    spans = spans_of(client, text)
    assert [utf16_slice(text, s["begin"], s["end"]) for s in spans] == [text]


def test_span_scores_are_the_sentences_own_scores(client):
    text = "Thank you. You stupid idiot!"
    spans = spans_of(client, text)
    for span, sentence in zip(spans, texts(text), strict=True):
        alone = client.post("/detect-toxic", json={"sequence": sentence}).get_json()["prediction"]["insult"]
        assert span["score"] == {"value": pytest.approx(alone, abs=1e-6), "type": "PROBABILITY"}
    assert spans[0]["score"]["value"] < 0.5 < spans[1]["score"]["value"]


def test_html_is_scored_without_markup_and_spans_point_into_the_original(client):
    html = '<p class="x">Thank&nbsp;you &amp; good.</p><p>You <b>stupid</b> idiot!</p><script>kill()</script>'
    spans = spans_of(client, html, "HTML")
    assert [utf16_slice(html, s["begin"], s["end"]) for s in spans] == [
        "Thank&nbsp;you &amp; good.",
        "You <b>stupid</b> idiot!",
    ]
    # The whole comment is scored as its visible text: markup, attributes and the script are not words.
    whole = client.post(PATH, json={"comment": {"text": html, "type": "HTML"}, "requestedAttributes": {
        "INSULT": {}, "THREAT": {}}}).get_json()["attributeScores"]
    visible = client.post("/detect-toxic", json={"sequence": "Thank\u00a0you & good.\nYou stupid idiot!"})
    expected = visible.get_json()["prediction"]
    assert whole["INSULT"]["summaryScore"]["value"] == pytest.approx(expected["insult"], abs=1e-6)
    assert whole["THREAT"]["summaryScore"]["value"] == pytest.approx(expected["threat"], abs=1e-6)


def test_html_entities_and_emoji_offsets_are_utf16_into_the_original(client):
    html = "<i>🙂🙂</i> you &#x1F621; idiot. <br>thank you"
    spans = spans_of(client, html, "HTML")
    assert [utf16_slice(html, s["begin"], s["end"]) for s in spans] == ["🙂🙂</i> you &#x1F621; idiot.", "thank you"]


def test_strip_html_decodes_entities_and_maps_each_character_back():
    original = "<b>a&lt;b</b>\n<p>c&#233;</p>"
    prepared = strip_html(original)
    assert prepared.text == "a<b\n\nc\u00e9\n"
    start = prepared.text.index("<")
    assert original[prepared.origin_start[start] : prepared.origin_end[start]] == "&lt;"
    e = prepared.text.index("\u00e9")
    assert original[prepared.origin_start[e] : prepared.origin_end[e]] == "&#233;"


def test_whole_comment_and_every_sentence_in_one_model_call(app):
    scorer = app.extensions["toxic_service.holder"].get()
    calls: list[list[str]] = []

    def counting(batch: list[str]) -> list[dict[str, float]]:
        calls.append(list(batch))
        return scorer.score(batch)  # the real scorer: only the calls are counted

    text = "Thank you. You idiot! I will kill you. Thank you."
    scored = score_with_spans(plain(text), counting, spans=True, max_spans=16)
    assert len(calls) == 1
    # Each distinct text once: the repeated "Thank you." is scored once.
    assert calls[0] == [text, "Thank you.", "You idiot!", "I will kill you."]
    assert len(scored.spans) == 4 and scored.spans[0][2] == scored.spans[3][2]


def test_one_sentence_comment_is_scored_once(app):
    scorer = app.extensions["toxic_service.holder"].get()
    calls: list[list[str]] = []
    score_with_spans(plain("you idiot"), lambda b: calls.append(b) or scorer.score(b), spans=True, max_spans=16)
    assert calls == [["you idiot"]]


def test_more_sentences_than_the_batch_limit_are_merged_into_runs():
    bounds = [(i * 3, i * 3 + 2) for i in range(10)]
    merged = group_bounds(bounds, 4)
    assert len(merged) == 4 and merged[0] == (0, 8) and merged[-1] == (27, 29)
    assert group_bounds(bounds, 10) == bounds


def test_many_sentences_answer_within_the_batch_limit(client, app):
    limit = app.extensions["toxic_service.limits"].max_batch
    text = " ".join(f"Idiot {i}." for i in range(limit * 3))
    spans = spans_of(client, text)
    assert 1 < len(spans) <= limit - 1
    assert spans[0]["begin"] == 0 and spans[-1]["end"] == units(text)
