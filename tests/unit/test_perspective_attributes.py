"""The attribute <-> label map and the languages come from the served bundle's metadata.json, not the API."""

from __future__ import annotations

import json
import shutil

import pytest
from toxic_service.api import create_app
from toxic_service.bundle import JIGSAW_PERSPECTIVE_ATTRIBUTES, load_metadata
from toxic_service.perspective.attributes import AttributeMap
from toxic_service.perspective.errors import PerspectiveError

PATH = "/v1alpha1/comments:analyze"


def served_app(tiny_settings, tmp_path, **metadata_changes):
    """An app serving a copy of the tiny bundle whose metadata.json is changed as given (None: field removed)."""
    bundle = tmp_path / "model"
    shutil.copytree(tiny_settings.bundle_dir, bundle)
    doc = json.loads((bundle / "metadata.json").read_text())
    for key, value in metadata_changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    (bundle / "metadata.json").write_text(json.dumps(doc))
    return create_app(tiny_settings.replace(bundle=bundle, feedback_db=tmp_path / "feedback.sqlite"))


def analyze(client, attributes, **extra):
    return client.post(PATH, json={"comment": {"text": "you stupid idiot"},
                                   "requestedAttributes": {a: {} for a in attributes}, **extra})


def test_the_tiny_bundle_serves_the_jigsaw_map(tiny_bundle_dir):
    attrs = AttributeMap.from_metadata(load_metadata(tiny_bundle_dir))
    assert dict(attrs.to_label) == JIGSAW_PERSPECTIVE_ATTRIBUTES
    assert attrs.languages == ("en",)


def test_resolve_keeps_request_order_and_refuses_or_drops_the_unknown():
    attrs = AttributeMap(to_label={"TOXICITY": "toxic", "INSULT": "insult"}, languages=("en",))
    assert attrs.resolve({"INSULT": {}, "TOXICITY": {}}, False) == [("INSULT", "insult"), ("TOXICITY", "toxic")]
    assert attrs.resolve({"SPAM": {}, "INSULT": {}}, True) == [("INSULT", "insult")]
    with pytest.raises(PerspectiveError) as err:
        attrs.resolve({"SPAM": {}}, False)
    assert "SPAM" in err.value.message and "TOXICITY, INSULT" in err.value.message
    assert err.value.body()["error"]["details"][0]["fieldViolations"][0]["field"] == "requestedAttributes.SPAM"


def test_languages_compare_without_case():
    attrs = AttributeMap(to_label={}, languages=("en", "pt-br"))
    assert attrs.unsupported_languages(["EN", "pt-BR", "de"]) == ["de"]


def test_an_overridden_map_is_served_as_written(tiny_settings, tmp_path):
    app = served_app(tiny_settings, tmp_path, perspective_attributes={"TOXICITY": "toxic", "MEAN": "insult"})
    client = app.test_client()
    native = client.post("/detect-toxic", json={"sequence": "you stupid idiot"}).get_json()["prediction"]
    body = analyze(client, ["MEAN"]).get_json()
    assert body["attributeScores"]["MEAN"]["summaryScore"]["value"] == pytest.approx(native["insult"], abs=1e-6)
    refused = analyze(client, ["INSULT"])  # no longer in the bundle's map
    assert refused.status_code == 400
    assert "INSULT" in refused.get_json()["error"]["message"] and "MEAN" in refused.get_json()["error"]["message"]


def test_an_old_bundle_serves_only_what_its_model_learned(tiny_settings, tmp_path):
    app = served_app(tiny_settings, tmp_path, perspective_attributes=None, languages=None,
                     trained_labels=["toxic", "insult"])
    client = app.test_client()
    assert analyze(client, ["TOXICITY", "INSULT"]).status_code == 200
    threat = analyze(client, ["THREAT"])
    assert threat.status_code == 400
    message = threat.get_json()["error"]["message"]
    assert "THREAT" in message and "supported attributes: TOXICITY, INSULT" in message
    assert analyze(client, ["THREAT", "INSULT"], dropUnsupportedAttributes=True).get_json()["attributeScores"].keys() \
        == {"INSULT"}


def test_the_bundles_languages_are_served(tiny_settings, tmp_path):
    app = served_app(tiny_settings, tmp_path, languages=["en", "de"])
    client = app.test_client()
    german = analyze(client, ["INSULT"], languages=["de"])
    assert german.status_code == 200 and german.get_json()["languages"] == ["de"]
    assert analyze(client, ["INSULT"]).get_json()["detectedLanguages"] == ["en", "de"]
    french = analyze(client, ["INSULT"], languages=["fr"])
    assert french.status_code == 400
    assert french.get_json()["error"]["details"][0]["errorType"] == "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE"
    assert "supports en, de" in french.get_json()["error"]["message"]
