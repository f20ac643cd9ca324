"""GET /$discovery/rest: Google's commentanalyzer v1alpha1 shape, pointing at the server the client reached.

Through Flask's test client with the tiny real bundle. The expected shape
below is Google's published document (names, ids, paths, property names and
types): the oracle is Google's, not our code. The real clients' run against
real gunicorn is tests/integration/test_perspective_clients.py.
"""

from __future__ import annotations

import json

import pytest
from toxic_service.api import create_app
from toxic_service.perspective.discovery import normalize_host
from toxic_service.perspective.errors import PerspectiveError

DISCOVERY = "/$discovery/rest?version=v1alpha1"

# Google's commentanalyzer v1alpha1 document: schema -> {property: type or $ref}.
GOOGLE_SCHEMAS = {
    "AnalyzeCommentRequest": {
        "clientToken": "string", "comment": "$TextEntry", "communityId": "string", "context": "$Context",
        "doNotStore": "boolean", "dropUnsupportedAttributes": "boolean", "languages": "array",
        "requestedAttributes": "object", "sessionId": "string", "spanAnnotations": "boolean",
    },
    "AnalyzeCommentResponse": {
        "attributeScores": "object", "clientToken": "string", "detectedLanguages": "array", "languages": "array",
    },
    "ArticleAndParentComment": {"article": "$TextEntry", "parentComment": "$TextEntry"},
    "AttributeParameters": {"scoreThreshold": "number", "scoreType": "string"},
    "AttributeScores": {"spanScores": "array", "summaryScore": "$Score"},
    "Context": {"articleAndParentComment": "$ArticleAndParentComment", "entries": "array"},
    "Score": {"type": "string", "value": "number"},
    "SpanScore": {"begin": "integer", "end": "integer", "score": "$Score"},
    "SuggestCommentScoreRequest": {
        "attributeScores": "object", "clientToken": "string", "comment": "$TextEntry", "communityId": "string",
        "context": "$Context", "languages": "array", "sessionId": "string",
    },
    "SuggestCommentScoreResponse": {"clientToken": "string", "detectedLanguages": "array", "requestedLanguages": "array"},
    "TextEntry": {"text": "string", "type": "string"},
}
GOOGLE_PARAMETERS = {
    "$.xgafv", "access_token", "alt", "callback", "fields", "key", "oauth_token", "prettyPrint", "quotaUser",
    "uploadType", "upload_protocol",
}
SCORE_TYPES = ["SCORE_TYPE_UNSPECIFIED", "PROBABILITY", "STD_DEV_SCORE", "PERCENTILE", "RAW"]


@pytest.fixture(scope="module")
def app(tiny_settings):
    return create_app(tiny_settings)


@pytest.fixture()
def client(app):
    return app.test_client()


def get_doc(client, **kw) -> dict:
    response = client.get(DISCOVERY, **kw)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()


def test_top_level_fields_are_googles(client):
    doc = get_doc(client)
    assert {k: doc[k] for k in ("kind", "discoveryVersion", "id", "name", "version", "protocol", "servicePath",
                                "basePath", "batchPath", "canonicalName")} == {
        "kind": "discovery#restDescription", "discoveryVersion": "v1", "id": "commentanalyzer:v1alpha1",
        "name": "commentanalyzer", "version": "v1alpha1", "protocol": "rest", "servicePath": "",
        "basePath": "", "batchPath": "batch", "canonicalName": "Comment Analyzer",
    }
    assert set(doc["parameters"]) == GOOGLE_PARAMETERS
    assert all(p["location"] == "query" for p in doc["parameters"].values())
    assert doc["parameters"]["alt"]["default"] == "json"
    # No OAuth: a client built without a key must not go looking for Google credentials, nor switch to mTLS.
    assert "auth" not in doc and "mtlsRootUrl" not in doc


def test_methods_are_googles_and_routed_here(client, app):
    methods = get_doc(client)["resources"]["comments"]["methods"]
    assert set(methods) == {"analyze", "suggestscore"}
    adapter = app.url_map.bind("localhost")
    for name, request, response in (("analyze", "AnalyzeCommentRequest", "AnalyzeCommentResponse"),
                                    ("suggestscore", "SuggestCommentScoreRequest", "SuggestCommentScoreResponse")):
        method = methods[name]
        assert method["id"] == f"commentanalyzer.comments.{name}"
        assert method["path"] == method["flatPath"] == f"v1alpha1/comments:{name}"
        assert method["httpMethod"] == "POST"
        assert method["request"] == {"$ref": request} and method["response"] == {"$ref": response}
        assert method["parameters"] == {} and method["parameterOrder"] == []
        assert "scopes" not in method
        # rootUrl ("/" here) + servicePath ("") + path is a route of the Perspective blueprint.
        endpoint, _ = adapter.match("/" + method["path"], method="POST")
        assert endpoint == f"perspective.perspective_{name}"


def test_schemas_have_googles_properties_and_types(client):
    schemas = get_doc(client)["schemas"]
    assert set(schemas) == set(GOOGLE_SCHEMAS)
    for name, expected in GOOGLE_SCHEMAS.items():
        schema = schemas[name]
        assert schema["id"] == name and schema["type"] == "object"
        got = {prop: ("$" + spec["$ref"]) if "$ref" in spec else spec["type"] for prop, spec in schema["properties"].items()}
        assert got == expected, name
    assert schemas["SpanScore"]["properties"]["begin"]["format"] == "int32"
    assert schemas["Score"]["properties"]["value"]["format"] == "float"
    assert schemas["AttributeParameters"]["properties"]["scoreType"]["enum"] == SCORE_TYPES
    assert schemas["TextEntry"]["properties"]["type"]["enum"] == ["TEXT_TYPE_UNSPECIFIED", "PLAIN_TEXT", "HTML"]
    for name in ("AnalyzeCommentRequest", "SuggestCommentScoreRequest", "AnalyzeCommentResponse"):
        maps = [p for p in schemas[name]["properties"].values() if p.get("type") == "object"]
        for prop in maps:
            assert prop["additionalProperties"]["$ref"] in schemas


def test_every_ref_resolves(client):
    doc = get_doc(client)
    refs = []

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs and set(refs) <= set(doc["schemas"])


def test_requested_attributes_described_from_the_served_bundle(client, tiny_settings):
    from toxic_service.bundle import load_metadata

    attributes = load_metadata(tiny_settings.bundle_dir).perspective_attributes
    text = get_doc(client)["schemas"]["AnalyzeCommentRequest"]["properties"]["requestedAttributes"]["description"]
    assert attributes and all(f"{name} (label {label})" in text for name, label in attributes.items())


@pytest.mark.parametrize(
    ("base_url", "host", "root"),
    [
        ("http://localhost", None, "http://localhost/"),
        ("http://localhost", "Toxic.Example:8080", "http://toxic.example:8080/"),
        ("http://localhost", "toxic.example:80", "http://toxic.example/"),  # the scheme's default port left out
        ("https://localhost", "toxic.example:443", "https://toxic.example/"),
        ("https://localhost", "toxic.example:8443", "https://toxic.example:8443/"),
        ("http://localhost", "toxic.example.", "http://toxic.example/"),
        ("http://localhost", "127.0.0.1:5000", "http://127.0.0.1:5000/"),
        ("http://localhost", "[::1]:8080", "http://[::1]:8080/"),
        ("http://localhost", "[2001:db8::1]", "http://[2001:db8::1]/"),
        ("http://localhost", "a-b.c1.example", "http://a-b.c1.example/"),
    ],
)
def test_root_url_is_the_scheme_and_host_the_client_used(client, base_url, host, root):
    headers = {"Host": host} if host else {}
    response = client.get(DISCOVERY, base_url=base_url, headers=headers)
    assert response.status_code == 200
    assert response.get_json()["rootUrl"] == response.get_json()["baseUrl"] == root
    # Built from this request's Host: a shared cache must never hand it to another client.
    assert response.headers["Cache-Control"] == "no-store"


NOT_HOSTS = [
    "evil.example/path", "user@evil.example", "evil.example?x=1", "evil.example#x", "evil example",
    "evil.example:0", "evil.example:65536", "evil.example:http", "evil.example:", ":8080", "-evil.example",
    "evil-.example", "ev!l.example", "under_score.example", "999.1.1.1", "[::1", "[zz::1]", "[::1]x",
    "a..b", "x" * 64 + ".example", ".".join(["abc"] * 70), "évil.example", "evil.example\\x", "", " ",
]


@pytest.mark.parametrize("host", NOT_HOSTS)
def test_normalize_host_refuses_what_is_no_host_name(host):
    with pytest.raises(PerspectiveError) as caught:
        normalize_host(host, "http")
    assert caught.value.status == "INVALID_ARGUMENT" and caught.value.field == "Host"
    assert "Host header" in caught.value.message and (not host.strip() or host not in caught.value.message)


@pytest.mark.parametrize("host", NOT_HOSTS)
def test_a_host_that_is_no_host_name_is_a_400_without_echo(client, host):
    response = client.get(DISCOVERY, headers={"Host": host})
    assert response.status_code == 400, host
    error = response.get_json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
    # Some (a..b, a 64-letter label) Werkzeug's routing refuses before our view: the same 400, its words.
    assert "Host header" in error["message"] or "could not understand" in error["message"]
    if host.strip():
        assert host not in response.get_data(as_text=True)
    assert get_doc(client)["rootUrl"] == "http://localhost/"  # and the next request is served


@pytest.mark.parametrize("query", ["?version=v1", "?version=v1alpha2", "", "?version=", "?version=<b>x</b>"])
def test_other_versions_are_googles_not_found(client, query):
    response = client.get("/$discovery/rest" + query)
    assert response.status_code == 404
    error = response.get_json()["error"]
    assert error["status"] == "NOT_FOUND" and "version=v1alpha1" in error["message"]
    assert "<b>" not in response.get_data(as_text=True)


def test_the_clients_extra_query_parameters_are_ignored(client):
    # google-api-python-client adds key= (and userIp=) to the discovery URL; prettyPrint=false is Google's compact form.
    response = client.get(DISCOVERY + "&key=abc&userIp=10.0.0.1&prettyPrint=false")
    assert response.status_code == 200
    assert json.loads(response.data)["name"] == "commentanalyzer"
    assert b"\n  " not in response.data
