"""The HTTP API through Flask's test client, with the real tiny model and SQLite vocabulary."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import shutil
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from fixtures_builder import LABELS  # the tiny bundle's labels: what the app must serve
from toxic_service.api import create_app
from toxic_service.cli import main as cli
from toxic_service.commands.check import verify_scores
from toxic_service.commands.serve import default_workers
from toxic_service.errors import BundleError, VocabularyMismatch
from toxic_service.logs import JsonFormatter

_spec = importlib.util.spec_from_file_location("bad_inputs", Path(__file__).resolve().parents[1] / "data" / "bad_inputs.py")
bad_inputs = sys.modules.setdefault("bad_inputs", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(bad_inputs)

LIMITS = {"max_text_chars": 500, "max_batch": 8, "max_body_bytes": 8192}


@pytest.fixture(scope="module")
def settings(tiny_settings):
    return tiny_settings.replace(**LIMITS)


@pytest.fixture(scope="module")
def app(settings):
    return create_app(settings)


@pytest.fixture()
def client(app):
    return app.test_client()


def score(client, text: str) -> dict[str, float]:
    response = client.post("/detect-toxic", json={"sequence": text})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["prediction"]


def assert_scores(row: dict[str, float]) -> None:
    assert list(row) == list(LABELS)
    for value in row.values():
        assert isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0


def test_single_text_gets_six_scores_in_label_order(client):
    insult = score(client, "you idiot")
    polite = score(client, "thank you")
    assert_scores(insult)
    assert_scores(polite)
    assert insult["insult"] > 0.5 > polite["insult"]


def test_seed_body_with_padding_is_accepted_and_padding_ignored(client):
    with_padding = client.post("/detect-toxic", json={"sequence": "you stupid idiot", "padding": 100})
    assert with_padding.status_code == 200
    body = with_padding.get_json()
    assert body["prediction"] == score(client, "you stupid idiot")
    # The seed's field first and unchanged; flagged/flags (per-label thresholds) and model are additive.
    assert list(body) == ["prediction", "flagged", "flags", "model"]
    # Numbers, not strings: the seed answered a Python repr.
    assert b'"insult":' in with_padding.data and b'"insult":"' not in with_padding.data


def test_batch_answers_in_order_and_matches_single_requests(client):
    texts = ["you idiot", "thank you", "I will kill you", "the edit looks good"]
    response = client.post("/detect-toxic", json={"sequences": texts})
    assert response.status_code == 200
    predictions = response.get_json()["predictions"]
    assert len(predictions) == len(texts)
    for text, row in zip(texts, predictions, strict=True):
        assert_scores(row)
        single = score(client, text)
        assert all(abs(row[k] - single[k]) < 1e-6 for k in LABELS)


def test_batch_of_exactly_max_batch_is_accepted(client):
    response = client.post("/detect-toxic", json={"sequences": ["you idiot"] * LIMITS["max_batch"]})
    assert response.status_code == 200
    assert len(response.get_json()["predictions"]) == LIMITS["max_batch"]


def test_text_of_exactly_max_text_chars_is_accepted(client):
    text = ("idiot " * LIMITS["max_text_chars"])[: LIMITS["max_text_chars"]]
    assert client.post("/detect-toxic", json={"sequence": text}).status_code == 200


def test_unicode_text_and_unknown_words_are_scored(client):
    assert_scores(score(client, "café naïve 🙂 zzyzx qwertyuiop"))


BAD = bad_inputs.cases(**LIMITS)


def test_there_are_at_least_30_kinds_of_bad_input():
    assert len(BAD) >= 30


@pytest.mark.parametrize("case", [c for c in BAD if not c.chunked], ids=lambda c: c.name)
def test_bad_input_gets_json_error_and_changes_nothing(client, case):
    response = client.open(case.path, method=case.method, data=case.body, headers=case.headers)
    assert response.status_code == case.status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == case.code
    assert case.message_contains.lower() in error["message"].lower()
    assert "Traceback" not in response.get_data(as_text=True)
    if case.allow:
        assert response.headers["Allow"] == case.allow
    assert client.get("/readyz").status_code == 200
    assert_scores(score(client, "you idiot"))


def test_unexpected_error_is_a_generic_json_500_and_service_keeps_serving(settings):
    app = create_app(settings)

    def boom():
        raise RuntimeError("secret internal detail")

    app.add_url_rule("/boom", "boom", boom)
    client = app.test_client()
    response = client.get("/boom")
    assert response.status_code == 500
    assert response.get_json() == {"error": {"code": "internal_error", "message": "internal error; see the service log"}}
    assert b"secret" not in response.data
    assert client.get("/readyz").status_code == 200


def test_internal_error_codes_never_reach_clients(settings):
    """A CLI-only code (bundle_error) raised while serving is a generic internal_error; its detail stays in the log."""
    app = create_app(settings)

    def broken_bundle():
        raise BundleError("/secret/path/model.tflite changed")

    app.add_url_rule("/broken", "broken", broken_bundle)
    response = app.test_client().get("/broken")
    assert response.status_code == 500
    assert response.get_json() == {"error": {"code": "internal_error", "message": "internal error; see the service log"}}


def test_every_error_the_app_emits_validates_against_the_documented_error_schema(client, settings):
    spec = client.get("/openapi.json").get_json()
    answers = {
        "/static/{filename}": client.get("/static/app.js", headers={"Range": "bytes=999999-"}),  # 416 from Werkzeug
        "/detect-toxic": client.post("/detect-toxic", data=b"x" * (settings.max_body_bytes + 1),
                                     headers={"Content-Type": "application/json"}),  # 413 by Content-Length
    }
    assert [r.status_code for r in answers.values()] == [416, 413]
    for path, response in answers.items():
        documented = next(iter(spec["paths"][path].values()))["responses"][str(response.status_code)]
        schema = documented["content"]["application/json"]["schema"]
        jsonschema.validate(response.get_json(), _resolve(spec, schema))
    assert str(settings.max_body_bytes) in answers["/detect-toxic"].get_json()["error"]["message"]


def test_livez_and_readyz(client):
    assert client.get("/livez").get_json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["labels"] == list(LABELS)


def test_security_headers_on_api_and_page(client):
    api = client.post("/detect-toxic", json={"sequence": "hi"})
    assert api.headers["X-Content-Type-Options"] == "nosniff"
    assert api.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in api.headers["Content-Security-Policy"]
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"


def test_page_is_self_contained_and_accessible(client):
    html = client.get("/").get_data(as_text=True)
    for asset in ("static/app.js", "static/app.css"):
        assert asset in html
        assert client.get("/" + asset).status_code == 200
    everything = html + client.get("/static/app.js").get_data(as_text=True) + client.get("/static/app.css").get_data(as_text=True)
    assert "http://" not in everything and "https://" not in everything and "//cdn" not in everything
    assert '<label for="comment">' in html and 'role="alert"' in html and 'lang="en"' in html
    js = client.get("/static/app.js").get_data(as_text=True)
    assert '"role", "meter"' in js and "aria-valuenow" in js and "aria-labelledby" in js


def test_static_path_traversal_is_refused(client):
    response = client.get("/static/../api/__init__.py")
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def metric_value(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_part = series.partition("{")
        if metric == name and all(pair in label_part for pair in want.split(",") if pair):
            total += float(value)
    return total


def test_metrics_count_requests_latency_batches_and_cache(client):
    before = client.get("/metrics").get_data(as_text=True)
    client.post("/detect-toxic", json={"sequences": ["you idiot", "thank you", "you idiot"]})
    client.post("/detect-toxic", json={"sequence": "you idiot"})
    client.post("/detect-toxic", data="x", content_type="text/plain")
    after_response = client.get("/metrics")
    assert after_response.mimetype == "text/plain"
    after = after_response.get_data(as_text=True)

    def delta(name, **labels):
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert delta("toxic_http_requests_total", route="/detect-toxic", method="POST", status="200") == 2
    assert delta("toxic_http_requests_total", route="/detect-toxic", method="POST", status="415") == 1
    assert delta("toxic_http_request_duration_seconds_count", route="/detect-toxic", status="200") == 2
    assert delta("toxic_inference_duration_seconds_count") == 2
    assert delta("toxic_batch_size_sum") == 4
    # The second "you idiot" request finds both words in the cache.
    assert delta("toxic_vocab_cache_hits_total") >= 2
    assert metric_value(after, "toxic_vocab_cache_misses_total") >= 1


def _openapi_path(rule: str) -> str:
    return rule.replace("<path:filename>", "{filename}")


def test_openapi_is_valid_3_1_and_lists_every_route_method_and_limit(app, client, settings):
    from schemathesis.specs.openapi.definitions import OPENAPI_31

    spec = client.get("/openapi.json").get_json()
    jsonschema.Draft202012Validator(OPENAPI_31).validate(spec)
    assert spec["openapi"].startswith("3.1")
    routes = {_openapi_path(r.rule): r.methods - {"HEAD"} for r in app.url_map.iter_rules()}
    assert set(spec["paths"]) == set(routes)
    for path, methods in routes.items():
        assert {m.lower() for m in methods} == set(spec["paths"][path]), path
    request_schema = spec["components"]["schemas"]["DetectRequest"]
    assert request_schema["properties"]["sequence"]["maxLength"] == settings.max_text_chars
    assert request_schema["properties"]["sequences"]["maxItems"] == settings.max_batch
    assert str(settings.max_body_bytes) in spec["paths"]["/detect-toxic"]["post"]["description"]
    assert list(spec["components"]["schemas"]["Scores"]["properties"]) == list(LABELS)


def _resolve(spec: dict, schema: dict) -> dict:
    """A schema with the document's components, so jsonschema can follow its $refs."""
    return {**schema, "components": spec["components"]}


def test_openapi_is_true_to_responses_including_every_error(client):
    spec = client.get("/openapi.json").get_json()
    detect = spec["paths"]["/detect-toxic"]["post"]["responses"]
    for body in ({"sequence": "you idiot"}, {"sequences": ["a", "thank you"]}):
        response = client.post("/detect-toxic", json=body)
        schema = detect["200"]["content"]["application/json"]["schema"]
        jsonschema.validate(response.get_json(), _resolve(spec, schema))
    for case in BAD:
        if case.chunked:
            continue
        response = client.open(case.path, method=case.method, data=case.body, headers=case.headers)
        operations = spec["paths"].get(case.path)
        if operations is None:  # an unknown route: no operation documents it, but the body is still an Error
            jsonschema.validate(response.get_json(), _resolve(spec, {"$ref": "#/components/schemas/Error"}))
            continue
        # A wrong method is documented (405) on every operation of the path.
        operation = operations.get(case.method.lower()) or next(iter(operations.values()))
        documented = operation["responses"]
        assert str(response.status_code) in documented, case.name
        schema = documented[str(response.status_code)]["content"]["application/json"]["schema"]
        jsonschema.validate(response.get_json(), _resolve(spec, schema))


def test_store_missing_at_start_gives_503_then_recovers_without_restart(settings, tiny_sqlite_path, tmp_path):
    vocab = tmp_path / "vocab.sqlite"
    app = create_app(settings.replace(**{"sqlite_path": vocab}), retry_interval=0.05)
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["error"]["code"] == "not_ready"
    scored = client.post("/detect-toxic", json={"sequence": "you idiot"})
    assert scored.status_code == 503 and scored.get_json()["error"]["code"] == "not_ready"
    assert client.get("/livez").status_code == 200
    shutil.copy(tiny_sqlite_path, vocab)
    deadline = time.monotonic() + 5
    while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get("/readyz").status_code == 200
    assert score(client, "you idiot")["insult"] > 0.5


def test_bundle_vocabulary_mismatch_is_fatal_at_start(settings, tiny_bundle_dir, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, bundle)
    meta = json.loads((bundle / "metadata.json").read_text())
    meta["vocabulary"]["checksum"] = "sha256:" + "0" * 64
    (bundle / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(VocabularyMismatch):
        create_app(settings.replace(**{"bundle": bundle}))


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.mark.parametrize("log_text", [False, True])
def test_logs_are_json_lines_and_hold_text_only_when_asked(settings, log_text):
    app = create_app(settings.replace(**{"log_text": log_text}))
    capture = _Capture()
    logger = logging.getLogger("toxic_service")
    logger.addHandler(capture)
    try:
        app.test_client().post("/detect-toxic", json={"sequence": "you idiot zebracorn"})
    finally:
        logger.removeHandler(capture)
    docs = [json.loads(line) for line in capture.lines]
    assert all("\n" not in line for line in capture.lines)
    request_lines = [d for d in docs if d.get("event") == "request"]
    assert request_lines and request_lines[-1]["status"] == 200 and request_lines[-1]["route"] == "/detect-toxic"
    assert ("zebracorn" in "".join(capture.lines)) is log_text


def test_check_command_passes_on_the_tiny_bundle(tiny_bundle_dir, tiny_sqlite_path):
    result = CliRunner().invoke(cli, ["check", "--bundle", str(tiny_bundle_dir), "--sqlite", str(tiny_sqlite_path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("OK")
    for label in LABELS:
        assert label in result.output


def test_check_command_fails_with_one_line_on_a_mismatched_vocabulary(tiny_bundle_dir, tiny_sqlite_path, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, bundle)
    meta = json.loads((bundle / "metadata.json").read_text())
    meta["vocabulary"]["checksum"] = "sha256:" + "1" * 64
    (bundle / "metadata.json").write_text(json.dumps(meta))
    result = CliRunner().invoke(cli, ["check", "--bundle", str(bundle), "--sqlite", str(tiny_sqlite_path)])
    assert result.exit_code == 1
    assert "do not belong together" in result.output and len(result.output.strip().splitlines()) == 1


def test_check_command_fails_when_the_vocabulary_is_missing(tiny_bundle_dir, tmp_path):
    result = CliRunner().invoke(cli, ["check", "--bundle", str(tiny_bundle_dir), "--sqlite", str(tmp_path / "none.sqlite")])
    assert result.exit_code == 1 and "error:" in result.output


GOOD = [dict.fromkeys(LABELS, 0.9), dict.fromkeys(LABELS, 0.1)]


@pytest.mark.parametrize(
    ("rows", "labels", "fragment"),
    [
        ([GOOD[0]], LABELS, "2 texts gave 1"),
        ([{**GOOD[0], "toxic": float("nan")}, GOOD[1]], LABELS, "not a number between 0 and 1"),
        ([{**GOOD[0], "toxic": 1.5}, GOOD[1]], LABELS, "not a number between 0 and 1"),
        ([{**GOOD[0], "toxic": "0.9"}, GOOD[1]], LABELS, "not a number between 0 and 1"),
        ([GOOD[1], GOOD[0]], LABELS, "does not score higher"),
        ([{k: GOOD[0][k] for k in reversed(LABELS)}, GOOD[1]], LABELS, "have labels"),
        (GOOD, ("a", "b"), "differ from the bundle"),
    ],
)
def test_check_rejects_every_kind_of_bad_result(rows, labels, fragment):
    with pytest.raises(BundleError, match=fragment):
        verify_scores(labels, LABELS if labels == LABELS else ("x",), LABELS, rows)


def test_check_accepts_good_results_and_names_the_separating_label():
    assert verify_scores(LABELS, LABELS, ("insult",), GOOD) == "insult"


def test_worker_count_follows_cpus_and_memory():
    assert default_workers("litert", mem_available_mb=16_000, cpus=2) == 5
    assert default_workers("litert", mem_available_mb=700, cpus=8) == 3
    assert default_workers("keras", mem_available_mb=900, cpus=2) == 1
    assert default_workers("keras", mem_available_mb=100, cpus=2) == 1  # never zero


def test_json_formatter_writes_one_line_even_for_tracebacks():
    try:
        raise ValueError("line one\nline two")
    except ValueError:
        record = logging.LogRecord("toxic_service.x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line and json.loads(line)["exc"].startswith("Traceback")
