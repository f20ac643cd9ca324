"""POST /v1alpha1/comments:analyze through Flask's test client, with the real tiny model and SQLite vocabulary."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
from toxic_service.api import create_app
from toxic_service.bundle import load_metadata, model_identity

_spec = importlib.util.spec_from_file_location(
    "perspective_bad_inputs", Path(__file__).resolve().parents[1] / "data" / "perspective_bad_inputs.py"
)
bad_inputs = sys.modules.setdefault("perspective_bad_inputs", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(bad_inputs)

LIMITS = {"max_text_chars": 30000, "max_batch": 16, "max_body_bytes": 65536}
PATH = "/v1alpha1/comments:analyze"


@pytest.fixture(scope="module")
def settings(tiny_settings, tmp_path_factory):
    # The feedback store and keys live beside data_dir: a writable copy of nothing but the paths.
    return tiny_settings.replace(**LIMITS, feedback_db=tmp_path_factory.mktemp("feedback") / "feedback.sqlite")


@pytest.fixture(scope="module")
def app(settings):
    return create_app(settings)


@pytest.fixture()
def client(app):
    return app.test_client()


def analyze(client, doc: dict, query: str = "") -> dict:
    response = client.post(f"{PATH}?{query}" if query else PATH, json=doc)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def request(text: str, *attributes: str, **extra: object) -> dict:
    return {"comment": {"text": text}, "requestedAttributes": {a: {} for a in attributes or ("TOXICITY",)}, **extra}


def native(client, text: str) -> dict[str, float]:
    return client.post("/detect-toxic", json={"sequence": text}).get_json()["prediction"]


def test_scores_are_the_native_scores_under_perspective_names(client):
    body = analyze(client, request("you stupid idiot", "TOXICITY", "INSULT", "THREAT", "PROFANITY",
                                   "SEVERE_TOXICITY", "IDENTITY_ATTACK"))
    scores = native(client, "you stupid idiot")
    expected = {"TOXICITY": "toxic", "INSULT": "insult", "THREAT": "threat", "PROFANITY": "obscene",
                "SEVERE_TOXICITY": "severe_toxic", "IDENTITY_ATTACK": "identity_hate"}
    assert list(body["attributeScores"]) == list(expected)  # the request's order
    for name, label in expected.items():
        summary = body["attributeScores"][name]["summaryScore"]
        assert summary == {"value": pytest.approx(scores[label], abs=1e-6), "type": "PROBABILITY"}
    assert "spanScores" not in body["attributeScores"]["TOXICITY"]  # only with spanAnnotations
    assert body["attributeScores"]["INSULT"]["summaryScore"]["value"] > 0.5


def test_response_has_perspectives_fields_and_nothing_else(client):
    body = analyze(client, request("thank you", clientToken="tok-1", sessionId="s", communityId="c", doNotStore=True))
    assert list(body) == ["attributeScores", "languages", "detectedLanguages", "clientToken"]
    assert body["clientToken"] == "tok-1"
    assert body["languages"] == ["en"] and body["detectedLanguages"] == ["en"]  # the bundle's (no detector)
    assert "clientToken" not in analyze(client, request("thank you"))


def test_given_languages_are_echoed_and_not_detected(client):
    body = analyze(client, request("thank you", languages=["EN"]))
    assert body["languages"] == ["EN"] and "detectedLanguages" not in body


def test_score_threshold_omits_attributes_below_it(client):
    scores = native(client, "you idiot")
    cut = (scores["insult"] + scores["threat"]) / 2  # insult above, threat below
    assert scores["insult"] > cut > scores["threat"]
    doc = request("you idiot")
    doc["requestedAttributes"] = {"INSULT": {"scoreThreshold": cut}, "THREAT": {"scoreThreshold": cut},
                                  "TOXICITY": {"scoreType": "PROBABILITY", "scoreThreshold": 0}}
    body = analyze(client, doc)
    assert list(body["attributeScores"]) == ["INSULT", "TOXICITY"]
    # A threshold of exactly the score keeps it (below, not at, is omitted).
    doc["requestedAttributes"] = {"INSULT": {"scoreThreshold": scores["insult"]}}
    assert list(analyze(client, doc)["attributeScores"]) == ["INSULT"]


def test_threshold_applies_to_span_scores_too(client):
    doc = request("Thank you. You stupid idiot.", "INSULT", spanAnnotations=True)
    everything = analyze(client, doc)["attributeScores"]["INSULT"]["spanScores"]
    assert len(everything) == 2 and everything[0]["score"]["value"] < 0.5 < everything[1]["score"]["value"]
    doc["requestedAttributes"]["INSULT"] = {"scoreThreshold": 0.5}
    kept = analyze(client, doc)["attributeScores"]["INSULT"]["spanScores"]
    assert kept == [everything[1]]


def test_unknown_attribute_is_dropped_when_asked(client):
    body = analyze(client, request("you idiot", "FLIRTATION", "INSULT", dropUnsupportedAttributes=True))
    assert list(body["attributeScores"]) == ["INSULT"]


def test_unknown_attribute_error_names_it_and_lists_the_supported_ones(client, settings):
    response = client.post(PATH, json=request("you idiot", "SEXUALLY_EXPLICIT"))
    assert response.status_code == 400
    message = response.get_json()["error"]["message"]
    assert "SEXUALLY_EXPLICIT" in message
    for name in load_metadata(settings.bundle_dir).perspective_attributes:
        assert name in message


def test_unsupported_language_gets_perspectives_error_type(client):
    response = client.post(PATH, json=request("privet", "INSULT", languages=["ru"]))
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
    assert error["message"].startswith("Attribute INSULT does not support request languages: ru")
    detail = next(d for d in error["details"] if d.get("errorType"))
    assert detail == {
        "@type": "type.googleapis.com/google.commentanalyzer.v1alpha1.Error",
        "errorType": "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE",
        "languageNotSupportedByAttributeError": {"requestedLanguages": ["ru"], "attribute": "INSULT"},
    }


def test_unsupported_language_with_drop_answers_without_attributes(client):
    body = analyze(client, request("privet", "INSULT", languages=["ru"], dropUnsupportedAttributes=True))
    assert body["attributeScores"] == {} and body["languages"] == ["ru"]


def test_system_parameters_are_accepted_and_pretty_print_honoured(client):
    query = "key=anything&alt=json&fields=attributeScores&quotaUser=u1&%24.xgafv=2&prettyPrint=false"
    response = client.post(f"{PATH}?{query}", json=request("you idiot"))
    assert response.status_code == 200
    assert b"\n  " not in response.data and response.data.startswith(b'{"attributeScores":{')
    pretty = client.post(f"{PATH}?key=k", json=request("you idiot"))
    assert pretty.data.startswith(b'{\n  "attributeScores"')  # Google's default: prettyPrint=true
    assert json.loads(pretty.data) == response.get_json()


def test_snake_case_field_names_are_accepted_as_googles_parser_does(client):
    snake = {"comment": {"text": "you idiot"}, "requested_attributes": {"INSULT": {"score_threshold": 0.1}},
             "span_annotations": True, "client_token": "t"}
    camel = request("you idiot", "INSULT", spanAnnotations=True, clientToken="t")
    camel["requestedAttributes"]["INSULT"] = {"scoreThreshold": 0.1}
    assert analyze(client, snake) == analyze(client, camel)


def test_context_forms_are_accepted_and_do_not_change_scores(client):
    plain = analyze(client, request("you idiot"))
    for context in ({"entries": [{"text": "the article", "type": "PLAIN_TEXT"}, {"text": ""}]},
                    {"articleAndParentComment": {"article": {"text": "a"}, "parentComment": {"text": "b"}}}):
        assert analyze(client, request("you idiot", context=context)) == plain


def test_every_answer_names_the_model(client, settings):
    meta = load_metadata(settings.bundle_dir)
    identity = model_identity(meta, "model.tflite")
    assert identity["sha256"] == meta.model_files["model.tflite"] and len(identity["bundle"]) == 16
    header = f"{identity['bundle']}; file=model.tflite; sha256={identity['sha256']}"
    answers = [
        client.post(PATH, json=request("you idiot")),
        client.post(PATH, json={"comment": {"text": ""}}),  # errors too: the same model was serving
        client.post("/detect-toxic", json={"sequence": "you idiot"}),
        client.get("/readyz"),
        client.get("/livez"),
    ]
    for response in answers:
        assert response.headers["X-Toxic-Model"] == header, response.request.path
    assert answers[2].get_json()["model"] == identity
    assert client.post("/detect-toxic", json={"sequences": ["a", "b"]}).get_json()["model"] == identity


def test_bundle_id_changes_with_the_metadata(settings):
    meta = load_metadata(settings.bundle_dir)
    import dataclasses

    renamed = dataclasses.replace(meta, perspective_attributes={"TOXICITY": "toxic"})
    assert model_identity(renamed, "model.tflite")["bundle"] != model_identity(meta, "model.tflite")["bundle"]


def test_no_model_header_while_no_model_is_loaded(settings, tmp_path):
    app = create_app(settings.replace(sqlite_path=tmp_path / "missing.sqlite"), retry_interval=3600)
    client = app.test_client()
    response = client.post(PATH, json=request("you idiot"))
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["status"] == "UNAVAILABLE" and str(tmp_path) not in error["message"]
    assert "X-Toxic-Model" not in response.headers


def test_scores_are_finite_probabilities(client):
    body = analyze(client, request("café naïve 🙂 zzyzx", "TOXICITY", "INSULT", spanAnnotations=True))
    for entry in body["attributeScores"].values():
        for score in [entry["summaryScore"], *(s["score"] for s in entry["spanScores"])]:
            assert math.isfinite(score["value"]) and 0 <= score["value"] <= 1 and score["type"] == "PROBABILITY"


BAD = bad_inputs.cases(max_body_bytes=LIMITS["max_body_bytes"])


def test_there_are_at_least_25_kinds_of_bad_analyze_request():
    assert len(BAD) >= 25
    assert len({c.name for c in BAD}) == len(BAD)


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.name)
def test_bad_analyze_request_gets_googles_error_and_changes_nothing(client, case):
    before = analyze(client, request("you stupid idiot", "INSULT"))
    path = f"{case.path}?{case.query}" if case.query else case.path
    response = client.open(path, method=case.method, data=case.body, headers=case.headers)
    assert response.status_code == case.http, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == ["error"]
    error = body["error"]
    assert error["code"] == case.http and error["status"] == case.status
    assert case.in_message.lower() in error["message"].lower(), error["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    details = error.get("details", [])
    if case.violation:
        violations = [v for d in details if d["@type"].endswith("google.rpc.BadRequest") for v in d["fieldViolations"]]
        assert [v["field"] for v in violations] == [case.field]
    if case.error_type:
        assert [d["errorType"] for d in details if "errorType" in d] == [case.error_type]
    if case.http == 405:
        assert response.headers["Allow"] == "POST"
    # The service still answers, and the same.
    assert client.get("/readyz").status_code == 200
    assert analyze(client, request("you stupid idiot", "INSULT")) == before
