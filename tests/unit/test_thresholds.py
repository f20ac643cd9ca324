"""Per-label thresholds: TOXIC_THRESHOLD_<LABEL> settings, a bundle's recommended `thresholds`, and the
`flagged`/`flags` they give in /detect-toxic answers (issue 13, item 4), with the real tiny model."""

from __future__ import annotations

import json
import math
import shutil

import jsonschema
import pytest
from click.testing import CliRunner
from fixtures_builder import LABELS
from toxic_service.api import create_app
from toxic_service.bundle import BundleError, load_metadata, model_identity
from toxic_service.cli import main as cli
from toxic_service.feedback.stats import add_agreement, count
from toxic_service.feedback.store import AttributeSuggestion, Suggestion
from toxic_service.settings import DEFAULT_THRESHOLD, InvalidSettings, Settings


@pytest.fixture(autouse=True)
def _no_threshold_in_the_environment(monkeypatch):
    """Only what a test sets: no TOXIC_THRESHOLD_* or config file from the shell running the tests."""
    import os

    for name in list(os.environ):
        if name.startswith("TOXIC_THRESHOLD_") or name == "TOXIC_CONFIG_FILE":
            monkeypatch.delenv(name)


def _bundle_with(tmp_path, tiny_bundle_dir, **fields):
    """A copy of the tiny bundle whose metadata.json has `fields` added (None removes one)."""
    bundle = tmp_path / "model"
    shutil.copytree(tiny_bundle_dir, bundle)
    path = bundle / "metadata.json"
    doc = json.loads(path.read_text())
    for key, value in fields.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    path.write_text(json.dumps(doc))
    return bundle


# --- settings ----------------------------------------------------------------------------------------------


def test_every_label_defaults_to_one_half(tiny_settings):
    assert Settings().thresholds == {}
    assert tiny_settings.thresholds_for(LABELS) == dict.fromkeys(LABELS, DEFAULT_THRESHOLD) == dict.fromkeys(LABELS, 0.5)


def test_one_label_is_set_by_its_variable_and_the_others_keep_the_default(monkeypatch):
    monkeypatch.setenv("TOXIC_THRESHOLD_INSULT", " 0.7 ")
    monkeypatch.setenv("TOXIC_THRESHOLD_IDENTITY_HATE", "0")
    in_force = Settings().thresholds_for(LABELS)
    assert list(in_force) == list(LABELS)  # label order, as the scores
    assert in_force == {**dict.fromkeys(LABELS, 0.5), "insult": 0.7, "identity_hate": 0.0}


def test_a_keyword_beats_the_variable_which_beats_the_config_file(monkeypatch, tmp_path):
    config = tmp_path / "toxic.toml"
    config.write_text("threshold_insult = 0.6\nthreshold_threat = 0.9\n")
    monkeypatch.setenv("TOXIC_CONFIG_FILE", str(config))
    assert Settings().thresholds == {"insult": 0.6, "threat": 0.9}
    monkeypatch.setenv("TOXIC_THRESHOLD_INSULT", "0.65")
    assert Settings().thresholds == {"insult": 0.65, "threat": 0.9}
    assert Settings(threshold_insult=1).thresholds == {"insult": 1.0, "threat": 0.9}


def test_replace_keeps_the_thresholds_and_can_change_one(monkeypatch):
    monkeypatch.setenv("TOXIC_THRESHOLD_INSULT", "0.7")
    settings = Settings()
    monkeypatch.delenv("TOXIC_THRESHOLD_INSULT")  # a copy is of `settings`, not of today's environment
    assert settings.replace(max_batch=3).thresholds == {"insult": 0.7}
    assert settings.replace(threshold_toxic=0.2).thresholds == {"insult": 0.7, "toxic": 0.2}
    assert settings.replace(threshold_toxic=0.2) != settings


@pytest.mark.parametrize(
    "raw, says",
    [
        ("1.5", "between 0 and 1"),
        ("-0.1", "between 0 and 1"),
        ("1.0000001", "between 0 and 1"),
        ("nan", "between 0 and 1"),
        ("NaN", "between 0 and 1"),
        ("inf", "between 0 and 1"),
        ("high", "must be a number"),
        ("", "must be a number"),
        ("0,5", "must be a number"),
    ],
)
def test_a_bad_variable_stops_the_settings_naming_it(monkeypatch, raw, says):
    monkeypatch.setenv("TOXIC_THRESHOLD_INSULT", raw)
    with pytest.raises(InvalidSettings) as caught:
        Settings()
    assert "TOXIC_THRESHOLD_INSULT" in str(caught.value) and says in str(caught.value)


@pytest.mark.parametrize("value", [True, "0.5", 2, -1, math.nan, None, [0.5]])
def test_a_bad_keyword_or_file_value_is_refused_naming_the_variable(value):
    with pytest.raises(InvalidSettings, match="TOXIC_THRESHOLD_TOXIC"):
        Settings(threshold_toxic=value)


def test_a_bad_value_in_the_config_file_is_refused_naming_the_variable(monkeypatch, tmp_path):
    config = tmp_path / "toxic.toml"
    config.write_text('threshold_obscene = "half"\n')
    monkeypatch.setenv("TOXIC_CONFIG_FILE", str(config))
    with pytest.raises(InvalidSettings, match="TOXIC_THRESHOLD_OBSCENE: must be a number"):
        Settings()


def test_a_variable_without_a_label_is_refused(monkeypatch):
    monkeypatch.setenv("TOXIC_THRESHOLD_", "0.5")
    with pytest.raises(InvalidSettings, match="TOXIC_THRESHOLD_: names no label"):
        Settings()


def test_a_threshold_for_a_label_the_bundle_lacks_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("TOXIC_THRESHOLD_RUDENESS", "0.5")
    settings = Settings()  # the label set is the bundle's: only checked against one
    with pytest.raises(InvalidSettings) as caught:
        settings.thresholds_for(LABELS)
    assert "TOXIC_THRESHOLD_RUDENESS" in str(caught.value) and "insult" in str(caught.value)


# --- bundle metadata --------------------------------------------------------------------------------------


def test_a_bundle_recommends_thresholds_and_a_setting_still_wins(tmp_path, tiny_bundle_dir, tiny_settings):
    bundle = _bundle_with(tmp_path, tiny_bundle_dir, thresholds={"insult": 0.8, "toxic": 0.35})
    meta = load_metadata(bundle)
    assert meta.thresholds == {"insult": 0.8, "toxic": 0.35}
    assert meta.to_json()["thresholds"] == {"insult": 0.8, "toxic": 0.35}  # written back out (model import, train)
    in_force = tiny_settings.thresholds_for(meta.labels, meta.thresholds)
    assert in_force == {**dict.fromkeys(LABELS, 0.5), "insult": 0.8, "toxic": 0.35}
    assert tiny_settings.replace(threshold_insult=0.6).thresholds_for(meta.labels, meta.thresholds)["insult"] == 0.6


def test_a_bundle_without_thresholds_keeps_its_identity_and_one_with_them_has_another(tmp_path, tiny_bundle_dir):
    meta = load_metadata(tiny_bundle_dir)
    # The id hashes to_json(): a field written only when present leaves the ids of existing bundles alone.
    assert meta.thresholds == {} and "thresholds" not in meta.to_json()
    recommending = load_metadata(_bundle_with(tmp_path, tiny_bundle_dir, thresholds={"insult": 0.8}))
    # Recommended thresholds change what the bundle flags: they are part of its identity.
    assert model_identity(recommending, "model.tflite")["bundle"] != model_identity(meta, "model.tflite")["bundle"]


@pytest.mark.parametrize(
    "thresholds, says",
    [
        ({"rudeness": 0.5}, "'rudeness', which is not a label"),
        ({"insult": 1.5}, "insult: 1.5 is not a number between 0 and 1"),
        ({"insult": -0.5}, "is not a number between 0 and 1"),
        ({"insult": "0.5"}, "is not a number between 0 and 1"),
        ({"insult": True}, "is not a number between 0 and 1"),
        ({"insult": math.nan}, "is not a number between 0 and 1"),  # json.dumps writes NaN, json.loads reads it
        ([0.5] * 6, "'thresholds' must be an object"),
    ],
)
def test_bad_metadata_thresholds_are_a_bundle_error_naming_the_field(tmp_path, tiny_bundle_dir, thresholds, says):
    bundle = _bundle_with(tmp_path, tiny_bundle_dir, thresholds=thresholds)
    with pytest.raises(BundleError) as caught:
        load_metadata(bundle)
    assert "'thresholds'" in str(caught.value) and says in str(caught.value)


# --- the app -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_client(tiny_settings):
    return create_app(tiny_settings).test_client()


def _detect(client, body):
    response = client.post("/detect-toxic", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_a_single_answer_carries_flagged_and_flags_beside_the_unchanged_scores(default_client):
    body = _detect(default_client, {"sequence": "you stupid idiot"})
    assert list(body) == ["prediction", "flagged", "flags", "model"]
    assert list(body["prediction"]) == list(LABELS)  # the seed's field: scores only, as before
    assert list(body["flags"]) == list(LABELS)
    assert body["flags"] == {label: score >= 0.5 for label, score in body["prediction"].items()}
    assert body["flags"]["insult"] is True and body["flagged"] is True
    polite = _detect(default_client, {"sequence": "thank you"})
    assert polite["flagged"] is any(polite["flags"].values()) and polite["flags"]["insult"] is False


def test_a_batch_answer_carries_one_flagged_and_one_flags_per_text_in_order(default_client):
    texts = ["you idiot", "thank you", "I will kill you"]
    body = _detect(default_client, {"sequences": texts})
    assert list(body) == ["predictions", "flagged", "flags", "model"]
    assert len(body["flagged"]) == len(body["flags"]) == len(texts)
    for scores, flags, flagged in zip(body["predictions"], body["flags"], body["flagged"], strict=True):
        assert flags == {label: score >= 0.5 for label, score in scores.items()}
        assert flagged is any(flags.values())
    assert body["flagged"][0] is True and body["flags"][1]["insult"] is False


def test_a_label_exactly_at_its_threshold_is_flagged_and_just_under_it_is_not(tiny_settings):
    insult = _detect(create_app(tiny_settings).test_client(), {"sequence": "you idiot"})["prediction"]["insult"]
    others = {f"threshold_{label}": 1.0 for label in LABELS if label != "insult"}  # only insult can flag
    at = create_app(tiny_settings.replace(threshold_insult=insult, **others)).test_client()
    body = _detect(at, {"sequence": "you idiot"})
    assert body["prediction"]["insult"] == insult
    assert body["flags"]["insult"] is True and body["flagged"] is True  # >=, not >
    over = create_app(tiny_settings.replace(threshold_insult=math.nextafter(insult, 1.0), **others)).test_client()
    body = _detect(over, {"sequence": "you idiot"})
    assert body["flags"]["insult"] is False and body["flagged"] is False
    assert over.get("/readyz").get_json()["thresholds"]["insult"] == math.nextafter(insult, 1.0)


def test_metadata_thresholds_are_served_and_listed_on_readyz(tmp_path, tiny_bundle_dir, tiny_settings):
    bundle = _bundle_with(tmp_path, tiny_bundle_dir, thresholds={"insult": 1.0})
    client = create_app(tiny_settings.replace(bundle=bundle)).test_client()
    body = _detect(client, {"sequence": "you stupid idiot"})
    assert body["prediction"]["insult"] < 1.0 and body["flags"]["insult"] is False
    ready = client.get("/readyz").get_json()
    assert ready["thresholds"] == {**dict.fromkeys(LABELS, 0.5), "insult": 1.0}
    assert list(ready["thresholds"]) == ready["labels"]


def test_the_app_refuses_to_start_on_a_threshold_for_an_unknown_label(monkeypatch, tiny_settings):
    monkeypatch.setenv("TOXIC_THRESHOLD_RUDENESS", "0.5")
    with pytest.raises(InvalidSettings, match="TOXIC_THRESHOLD_RUDENESS: the bundle has no label 'rudeness'"):
        create_app(Settings(**{name: getattr(tiny_settings, name) for name in Settings.fields}))


def test_the_app_refuses_an_unknown_label_even_while_the_store_is_down(tiny_settings, tmp_path):
    # A worker whose vocabulary store is missing starts (503 until it answers): a wrong threshold must not.
    down = tiny_settings.replace(sqlite_path=tmp_path / "missing.sqlite", threshold_rudeness=0.5)
    with pytest.raises(InvalidSettings, match="TOXIC_THRESHOLD_RUDENESS"):
        create_app(down)


def test_responses_and_readyz_validate_against_the_openapi_document(default_client):
    spec = default_client.get("/openapi.json").get_json()
    components = {"components": spec["components"]}
    schemas = spec["components"]["schemas"]
    assert list(schemas["Flags"]["properties"]) == list(LABELS) and schemas["Flags"]["required"] == list(LABELS)
    assert list(schemas["Thresholds"]["properties"]) == list(LABELS)
    detect = spec["paths"]["/detect-toxic"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    for body in ({"sequence": "you idiot"}, {"sequences": ["you idiot", "thank you"]}):
        jsonschema.validate(_detect(default_client, body), {**detect, **components})
    ready = spec["paths"]["/readyz"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(default_client.get("/readyz").get_json(), {**ready, **components})
    # The schema is strict: an answer without the new fields, or a flag that is not a boolean, fails it.
    single = _detect(default_client, {"sequence": "you idiot"})
    for broken in ({k: v for k, v in single.items() if k != "flags"}, {**single, "flags": dict.fromkeys(LABELS, 1)}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, {**detect, **components})


def test_config_lists_the_threshold_family_and_the_effective_thresholds(monkeypatch, tiny_settings):
    monkeypatch.setenv("TOXIC_BUNDLE", str(tiny_settings.bundle_dir))
    monkeypatch.setenv("TOXIC_THRESHOLD_INSULT", "0.7")
    listed = CliRunner().invoke(cli, ["config"])
    assert listed.exit_code == 0 and "TOXIC_THRESHOLD_<LABEL>  (default: 0.5)" in listed.output
    effective = CliRunner().invoke(cli, ["config", "--effective"])
    assert effective.exit_code == 0, effective.output
    assert "TOXIC_THRESHOLD_INSULT = 0.7" in effective.output and "TOXIC_THRESHOLD_TOXIC = 0.5" in effective.output


# --- feedback stats -------------------------------------------------------------------------------------


def test_feedback_agreement_uses_the_thresholds_in_force_and_suggestions_keep_one_half():
    suggestions = [
        Suggestion(text="borderline", text_type="PLAIN_TEXT", attributes=(AttributeSuggestion("INSULT", 1.0),)),
        Suggestion(text="mild", text_type="PLAIN_TEXT", attributes=(AttributeSuggestion("INSULT", 0.5),)),
    ]

    def scores(texts):  # the model's answer for these two texts: 0.6 insult each
        return [dict.fromkeys(LABELS, 0.6) for _ in texts]

    def agreement(thresholds):
        stats = count(suggestions)
        add_agreement(stats, suggestions, {"INSULT": "insult"}, LABELS, scores, thresholds)
        return stats

    at_half = agreement(dict.fromkeys(LABELS, 0.5))
    assert (at_half.agreement["INSULT"].compared, at_half.agreement["INSULT"].agreed) == (2, 2)
    # At 0.7 the service would not flag 0.6: both suggesters (1.0, and 0.5 which means yes) disagree.
    strict = agreement({**dict.fromkeys(LABELS, 0.5), "insult": 0.7})
    assert strict.agreement["INSULT"].agreed == 0
    assert strict.to_json()["model_thresholds"] == {"insult": 0.7} and strict.to_json()["threshold"] == 0.5
