"""Google's own Perspective clients against real gunicorn on loopback, with the real default bundle.

Python google-api-python-client (discovery.build(..., discoveryServiceUrl=...,
static_discovery=False)) and Node googleapis (google.discoverAPI(url)) run
unmodified user code (tests/perspective_clients/) from a venv and a
node_modules of this test's own (tests/perspective_clients/install.py: cached
in .cache/perspective-clients, installed on first use). Keys are required, as
in production, with a key made by `toxic-service keys create`. The scores
they get back must be the native API's scores for the same texts: the
clients reached this model, through the rootUrl of our discovery document.

Also here, over real HTTP: the document's rootUrl as a client sees it (the
request's Host; X-Forwarded-Proto from a trusted peer only, as gunicorn
decides), a bad Host refused, an unknown version Google's 404.
"""

from __future__ import annotations

import csv
import http.client
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CLIENTS = REPO / "tests" / "perspective_clients"
DEFAULT_DATA = Path(os.environ.get("XDG_CACHE_HOME") or REPO / ".cache") / "toxic-service" / "default"
DISCOVERY = "/$discovery/rest?version=v1alpha1"
# The comment both client scripts send, and its two sentences as the spans must cut it.
COMMENT = "Thanks for the article. You are a stupid idiot."
SENTENCES = ["Thanks for the article.", "You are a stupid idiot."]
CLIENT_TIMEOUT = 180  # seconds for one client script (interpreter start, discovery, four calls)


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gs = _load("gunicorn_server", HERE / "gunicorn_server.py")
install = _load("perspective_clients_install", CLIENTS / "install.py")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("perspective-clients")


@pytest.fixture(scope="module")
def api_key(workdir) -> str:
    """A real key, made as an operator makes one; only its hash is in the file."""
    result = subprocess.run(
        [gs.TOXIC_SERVICE, "keys", "create", "clients", "--qps", "100", "--file", str(workdir / "keys.json")],
        capture_output=True, text=True, timeout=60, check=True,
    )
    key = result.stdout.strip()
    assert key and key not in (workdir / "keys.json").read_text()
    return key


@pytest.fixture(scope="module")
def server(workdir, api_key):
    model, vocab = DEFAULT_DATA / "model", DEFAULT_DATA / "vocab.sqlite"
    if not (model / "metadata.json").exists() or not vocab.exists():
        pytest.fail(f"the default bundle is not in {DEFAULT_DATA}: run `make assets` first")
    data = workdir / "data"
    env = gs.base_env(model, gs.copy_store(vocab, data), data)
    env.update(TOXIC_API_KEYS_FILE=str(workdir / "keys.json"), TOXIC_API_KEYS_REQUIRED="true")
    srv = gs.start(env, workdir / "gunicorn.log", workers=2)
    yield srv
    srv.stop()


def native_scores(server, texts: list[str]) -> list[dict[str, float]]:
    response = requests.post(server.url + "/detect-toxic", json={"sequences": texts}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def run_client(argv: list[str], env: dict[str, str] | None = None) -> dict:
    # The server is on loopback: no HTTP proxy a machine may set for the registries (httplib2 without PySocks
    # fails on any proxy variable, NO_PROXY or not).
    env = {k: v for k, v in (os.environ if env is None else env).items() if not k.lower().endswith("_proxy")}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False, env=env)
    assert result.returncode == 0, f"{argv[:2]} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def python_results(server, api_key):
    venv_python = install.python_client(log=lambda line: None)
    return run_client([str(venv_python), str(CLIENTS / "client.py"), server.url + DISCOVERY, api_key])


@pytest.fixture(scope="module")
def node_results(server, api_key):
    try:
        modules = install.node_client(log=lambda line: None)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    env = {**os.environ, "NODE_PATH": str(modules)}
    return run_client(["node", str(CLIENTS / "node" / "client.js"), server.url + DISCOVERY, api_key], env=env)


def assert_analyze(server, answer: dict, client_token: str) -> None:
    """Perspective's shape, and the native API's scores for the comment and for each sentence."""
    assert answer["ok"], answer
    response = answer["response"]
    assert response["clientToken"] == client_token
    scores = response["attributeScores"]
    assert set(scores) == {"TOXICITY", "INSULT"}
    whole, *sentences = native_scores(server, [COMMENT, *SENTENCES])
    for attribute, label in (("TOXICITY", "toxic"), ("INSULT", "insult")):
        summary = scores[attribute]["summaryScore"]
        assert summary["type"] == "PROBABILITY"
        assert summary["value"] == pytest.approx(whole[label], abs=1e-6)
        spans = scores[attribute]["spanScores"]
        assert [COMMENT[s["begin"]:s["end"]] for s in spans] == SENTENCES  # ASCII: UTF-16 units are characters
        for span, native in zip(spans, sentences, strict=True):
            assert span["score"]["type"] == "PROBABILITY"
            assert span["score"]["value"] == pytest.approx(native[label], abs=1e-5)
    # The real model tells the two sentences apart: the insult is in the second.
    assert scores["INSULT"]["spanScores"][1]["score"]["value"] > 0.5 > scores["INSULT"]["spanScores"][0]["score"]["value"]


def assert_unknown_attribute(answer: dict) -> None:
    assert not answer["ok"] and answer["status"] == 400, answer
    error = answer["body"]["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert "FLIRTATION" in error["message"] and "TOXICITY" in error["message"]


def test_python_client_analyze(server, python_results):
    assert_analyze(server, python_results["analyze"], "python-client-1")
    # The client built its URL from our document's rootUrl, with the key as Perspective's `key` parameter.
    uri = python_results["request_uri"]
    assert uri.startswith(server.url + "/v1alpha1/comments:analyze?") and "key=" in uri and "alt=json" in uri


def test_python_client_suggestscore(python_results):
    answer = python_results["suggestscore"]
    assert answer["ok"], answer
    assert answer["response"]["clientToken"] == "python-client-2"


def test_python_client_unknown_attribute_is_http_error_400(python_results):
    assert_unknown_attribute(python_results["unknown_attribute"])


def test_python_client_without_a_key_builds_and_is_refused(server):
    """No OAuth section: built without developerKey, the client looks for no Google credentials; keys are required."""
    venv_python = install.python_client(log=lambda line: None)
    results = run_client([str(venv_python), str(CLIENTS / "client.py"), server.url + DISCOVERY, ""])
    for call in ("analyze", "suggestscore"):
        assert results[call]["status"] == 403, results[call]
        error = results[call]["body"]["error"]
        assert error["status"] == "PERMISSION_DENIED" and error["message"] == "The request is missing a valid API key."
    assert "key=" not in results["request_uri"]


def test_node_client_analyze(server, node_results):
    assert_analyze(server, node_results["analyze"], "node-client-1")
    assert node_results["analyze"]["url"].startswith(server.url + "/v1alpha1/comments:analyze?key=")


def test_node_client_suggestscore(node_results):
    answer = node_results["suggestscore"]
    assert answer["ok"], answer
    assert answer["response"]["clientToken"] == "node-client-2"


def test_node_client_unknown_attribute_is_400(node_results):
    assert_unknown_attribute(node_results["unknown_attribute"])


def test_both_clients_suggestions_are_in_the_feedback_store(server, workdir, python_results, node_results):
    """What each client suggested is what `toxic-service feedback export` writes: the text and the 0/1 label."""
    for attribute, label in (("TOXICITY", "toxic"), ("INSULT", "insult")):  # python: TOXICITY, node: INSULT
        out = workdir / f"feedback-{label}.csv"
        subprocess.run([gs.TOXIC_SERVICE, "feedback", "export", "--out", str(out), "--attribute", attribute],
                       env=server.env, capture_output=True, text=True, timeout=120, check=True)
        rows = list(csv.DictReader(out.open(newline="")))
        assert [(row["comment_text"], row[label]) for row in rows] == [(COMMENT, "1")]


def _get_discovery(server, headers: dict[str, str], source: str = "127.0.0.1", path: str = DISCOVERY):
    """GET over a raw connection: exact headers (requests would add its own Host), from a chosen source address."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30, source_address=(source, 0))
    try:
        conn.putrequest("GET", path, skip_host="Host" in headers)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_discovery_root_url_is_the_address_the_client_used(server):
    status, doc = _get_discovery(server, {})
    assert status == 200
    assert doc["rootUrl"] == doc["baseUrl"] == server.url + "/"
    status, doc = _get_discovery(server, {"Host": "Toxic.Example:8443"})
    assert status == 200 and doc["rootUrl"] == "http://toxic.example:8443/"


def test_discovery_scheme_from_a_trusted_proxy_only(server):
    """nginx's X-Forwarded-Proto counts from a peer gunicorn trusts (loopback here, its unix socket in production)."""
    proxied = {"Host": "toxic.example", "X-Forwarded-Proto": "https"}
    status, doc = _get_discovery(server, proxied)
    assert status == 200 and doc["rootUrl"] == "https://toxic.example/"
    # 127.0.0.2 is not in gunicorn's forwarded_allow_ips: its claim is ignored, as gunicorn ignores it.
    status, doc = _get_discovery(server, proxied, source="127.0.0.2")
    assert status == 200 and doc["rootUrl"] == "http://toxic.example/"


@pytest.mark.parametrize("host", ["evil.example/x", "user@evil.example", "evil.example:99999", "a\tb", "under_score.example"])
def test_discovery_refuses_a_host_that_is_no_host_name(server, host):
    status, doc = _get_discovery(server, {"Host": host})
    assert status == 400
    assert doc["error"]["status"] == "INVALID_ARGUMENT" and "Host" in doc["error"]["message"]
    assert host not in json.dumps(doc)
    assert _get_discovery(server, {})[0] == 200  # and the service still answers


def test_discovery_unknown_version_is_googles_404(server):
    status, doc = _get_discovery(server, {}, path="/$discovery/rest?version=v1")
    assert status == 404 and doc["error"]["status"] == "NOT_FOUND" and "v1alpha1" in doc["error"]["message"]
