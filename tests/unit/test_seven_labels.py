"""The label set is the bundle's: a 7-label bundle passes `check`, and /readyz and /detect-toxic serve its 7 labels."""

from __future__ import annotations

import jsonschema
import pytest
from click.testing import CliRunner
from fixtures_builder import LABELS, build_tiny_fixtures
from toxic_service.api import create_app
from toxic_service.bundle import JIGSAW_LABELS, load_metadata
from toxic_service.cli import main as cli
from toxic_service.settings import Settings

SEVEN = (*LABELS, "spam")


@pytest.fixture(scope="module")
def seven():
    fixtures = build_tiny_fixtures(SEVEN)
    assert load_metadata(fixtures.bundle_dir).labels == SEVEN != JIGSAW_LABELS
    return fixtures


@pytest.fixture(scope="module")
def client(seven):
    settings = Settings(data_dir=seven.root, bundle=seven.bundle_dir, sqlite_path=seven.sqlite_path, vocab_backend="sqlite")
    return create_app(settings).test_client()


def test_check_passes_a_seven_label_bundle_and_lists_its_labels(seven):
    result = CliRunner().invoke(cli, ["check", "--bundle", str(seven.bundle_dir), "--sqlite", str(seven.sqlite_path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("OK")
    assert f"labels      7: {', '.join(SEVEN)}" in result.output
    assert "spam" in result.output.split("benign", 1)[1]  # its score row


def test_readyz_lists_the_seven_labels(client):
    ready = client.get("/readyz")
    assert ready.status_code == 200
    # The seventh label has its threshold too (TOXIC_THRESHOLD_SPAM), 0.5 as no setting or metadata names one.
    assert ready.get_json() == {"status": "ready", "labels": list(SEVEN), "thresholds": dict.fromkeys(SEVEN, 0.5)}


def test_detect_toxic_returns_seven_scores_as_the_openapi_document_says(client):
    spec = client.get("/openapi.json").get_json()
    assert list(spec["components"]["schemas"]["Scores"]["properties"]) == list(SEVEN)
    for body in ({"sequence": "you stupid idiot"}, {"sequences": ["you idiot", "thank you"]}):
        response = client.post("/detect-toxic", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        doc = response.get_json()
        rows = [doc["prediction"]] if "prediction" in doc else doc["predictions"]
        for row in rows:
            assert list(row) == list(SEVEN)
        schema = spec["paths"]["/detect-toxic"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        jsonschema.validate(doc, {**schema, "components": spec["components"]})
    abusive, polite = client.post("/detect-toxic", json={"sequences": ["you idiot", "thank you"]}).get_json()["predictions"]
    assert abusive["spam"] > polite["spam"]  # the seventh output is a real model output, not padding
