"""Bad input through nginx: the app's catalogue of bad requests, a property-based fuzz, 413 and 429 at the edge.

The catalogue and the fuzz go through an SSH tunnel to nginx on the host's
own 127.0.0.1:80 (rate-limit exempt, so thousands of requests test the app
and nginx, not the limiter). The 413 and 429 checks go through the published
port, as any client would.
Reproduce: TOXIC_RELIABILITY_PROFILE=short .venv/bin/pytest tests/reliability/test_bad_input.py
(TOXIC_FUZZ_SEED=<n> replays one fuzz run.)
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import math
import os
import random
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from relhost import REPO, HttpAnswer

# tests/data is a plain directory, not a package: load the catalogue by path (as tests/unit/test_api.py does).
_spec = importlib.util.spec_from_file_location("bad_inputs", REPO / "tests" / "data" / "bad_inputs.py")
bad_inputs = sys.modules.setdefault("bad_inputs", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(bad_inputs)

JSON_TYPES = ("application/json", "application/json; charset=utf-8", "Application/JSON")
REFERENCE = json.dumps({"sequence": "You are a stupid idiot and I will find you."}).encode()


class Client:
    """Keep-alive requests to one local port; reconnects after a failure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None
        self.sent = 0

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str], chunked: bool = False) -> HttpAnswer:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                if chunked and body is not None:
                    self.conn.request(method, path, body=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
                                      headers=headers, encode_chunked=True)
                else:
                    self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                answer = HttpAnswer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
                self.sent += 1
                if response.will_close:
                    self.close()
                return answer
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest):
                # A kept-alive connection the server had just closed: retry once on a fresh one.
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@pytest.fixture(scope="module")
def limits(host) -> dict[str, int]:
    """The limits in force, read from the deployed service's own OpenAPI document."""
    doc = host.http("GET", "/openapi.json").json()
    schema = doc["components"]["schemas"]["DetectRequest"]["properties"]
    description = doc["paths"]["/detect-toxic"]["post"]["description"]
    return {
        "max_text_chars": schema["sequence"]["maxLength"],
        "max_batch": schema["sequences"]["maxItems"],
        "max_body_bytes": int(re.search(r"larger than (\d+) bytes", description).group(1)),
    }


def _is_json_error(answer: HttpAnswer) -> bool:
    try:
        error = answer.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return answer.headers.get("content-type", "").startswith("application/json") and isinstance(error.get("code"), str) \
        and isinstance(error.get("message"), str)


def test_every_kind_of_bad_input_gets_its_json_error_through_nginx_and_changes_nothing(host, tunnel, limits, figures):
    client = Client(tunnel)
    json_header = {"Content-Type": "application/json"}
    before = client.send("POST", "/detect-toxic", REFERENCE, json_header)
    assert before.status == 200, before.body
    catalogue = bad_inputs.cases(limits["max_text_chars"], limits["max_batch"], limits["max_body_bytes"])
    wrong = []
    for case in catalogue:
        answer = client.send(case.method, case.path, case.body, dict(case.headers), chunked=case.chunked)
        problems = []
        if answer.status != case.status:
            problems.append(f"status {answer.status} != {case.status}")
        if not _is_json_error(answer):
            problems.append(f"not a JSON error: {answer.body[:120]!r}")
        elif answer.json()["error"]["code"] != case.code:
            problems.append(f"code {answer.json()['error']['code']} != {case.code}")
        elif case.message_contains and case.message_contains not in answer.json()["error"]["message"].lower():
            problems.append(f"message lacks {case.message_contains!r}: {answer.json()['error']['message']!r}")
        if case.allow and answer.headers.get("allow") != case.allow:
            problems.append(f"Allow {answer.headers.get('allow')!r} != {case.allow!r}")
        ready = client.send("GET", "/readyz", None, {})
        if ready.status != 200:
            problems.append(f"/readyz {ready.status} afterwards")
        if problems:
            wrong.append(f"{case.name}: {'; '.join(problems)}")
    after = client.send("POST", "/detect-toxic", REFERENCE, json_header)
    client.close()
    kinds = len(catalogue)
    figures.add("bad input: catalogue replayed through nginx", f"{kinds - len(wrong)} of {kinds} kinds answered as specified",
                "all, JSON error, /readyz 200 after each", not wrong and after.body == before.body, "; ".join(wrong)[:300])
    assert kinds >= 30
    assert not wrong, "\n".join(wrong)
    assert after.body == before.body, "the same comment scores differently after the bad input"


# ------------------------------------------------------------------------- fuzz


def _texts(max_chars: int) -> st.SearchStrategy[str]:
    # Mostly short comments; now and then one at the limit (the interesting edge).
    short = st.text(min_size=1, max_size=200)
    edge = st.integers(max_chars - 2, max_chars).map(lambda n: ("word " * n)[:n])
    return st.one_of(short, short, short, edge)


def _json_values() -> st.SearchStrategy[object]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
                        st.text(max_size=50))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                         st.dictionaries(st.text(max_size=10), inner, max_size=5)),
                        max_leaves=20)


@st.composite
def requests(draw, limits: dict[str, int]) -> dict:
    """One request: (method, path, content type, body) and whether the schema says it must score (200)."""
    texts = _texts(limits["max_text_chars"])
    kind = draw(st.sampled_from(["single", "batch", "shape", "bytes", "route"]))
    method, path, content_type, valid = "POST", "/detect-toxic", draw(st.sampled_from(JSON_TYPES)), False
    if kind == "single":
        doc: object = {"sequence": draw(texts)}
        if draw(st.booleans()):
            doc["padding"] = draw(_json_values())  # the seed's field: accepted and ignored
        valid = doc["sequence"].strip() != ""
        body = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()
    elif kind == "batch":
        items = draw(st.lists(texts, min_size=1, max_size=limits["max_batch"] + 2))
        valid = len(items) <= limits["max_batch"] and all(item.strip() for item in items)
        body = json.dumps({"sequences": items}).encode()
    elif kind == "shape":
        keys = st.one_of(st.sampled_from(["sequence", "sequences", "padding"]), st.text(max_size=12))
        doc = draw(st.one_of(st.dictionaries(keys, _json_values(), max_size=4), _json_values()))
        body = json.dumps(doc).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=3000))
        content_type = draw(st.one_of(st.sampled_from([*JSON_TYPES, "text/plain", "application/x-www-form-urlencoded", ""]),
                                      st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40)))
    else:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
        segment = quote(draw(st.text(max_size=30)), safe="")
        path = draw(st.sampled_from(["/detect-toxic", "/livez", "/readyz", "/metrics", "/openapi.json", "/",
                                     f"/static/{segment}", f"/{segment}", f"/detect-toxic/{segment}"]))
        body = draw(st.one_of(st.none(), st.binary(max_size=200)))
    if valid and len(body) > limits["max_body_bytes"]:
        valid = False
    return {"method": method, "path": path, "content_type": content_type, "body": body, "valid": valid}


def _nginx_rejects_request_line(path: str) -> bool:
    # nginx refuses a path whose %-decoding holds a NUL while it parses the request line, before any
    # server or location config (error_page included) applies, so its answer is its built-in HTML 400.
    return "%00" in path


def _check(answer: HttpAnswer, req: dict, limits: dict[str, int]) -> None:
    assert answer.status < 500, f"{answer.status} for {req['method']} {req['path']}: {answer.body[:300]!r}"
    if answer.status == 400 and _nginx_rejects_request_line(req["path"]):
        return  # nginx's own HTML 400: see test_a_request_line_nginx_cannot_parse_gets_its_own_400
    if answer.status >= 400:
        assert _is_json_error(answer), f"{answer.status} without a JSON error: {answer.body[:200]!r}"
    if req["valid"]:
        assert answer.status == 200, f"a request the schema allows was refused: {answer.status} {answer.body[:300]!r}"
        doc = answer.json()
        rows = [doc["prediction"]] if "prediction" in doc else doc["predictions"]
        for row in rows:
            assert len(row) == 6 and all(isinstance(v, float) and math.isfinite(v) and 0 <= v <= 1 for v in row.values()), row


def test_fuzz_of_the_api_through_nginx_never_gets_a_5xx(host, tunnel, limits, profile, figures):
    client = Client(tunnel)
    statuses: dict[int, int] = {}
    fuzz_seed = int(os.environ.get("TOXIC_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    started = time.monotonic()

    @seed(fuzz_seed)
    @settings(max_examples=profile.fuzz_requests, deadline=None, database=None, derandomize=False,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck), print_blob=True)
    @given(req=requests(limits))
    def fuzz(req: dict) -> None:
        headers = {"Content-Type": req["content_type"]} if req["content_type"] else {}
        answer = client.send(req["method"], req["path"], req["body"], headers)
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        _check(answer, req, limits)

    try:
        fuzz()
    finally:
        client.close()
        elapsed = time.monotonic() - started
        fivexx = sum(n for status, n in statuses.items() if status >= 500)
        figures.add("bad input: property-based fuzz (hypothesis) through nginx",
                    f"{client.sent} requests, {fivexx} x 5xx", ">= 2,000 requests, 0 x 5xx",
                    client.sent >= 2000 and fivexx == 0,
                    f"seed {fuzz_seed}; {elapsed:.0f} s; statuses {dict(sorted(statuses.items()))}")
    assert client.sent >= profile.fuzz_requests, f"only {client.sent} requests were generated"
    assert not any(status >= 500 for status in statuses)


# ------------------------------------------------------------------ at the edge


def test_a_request_line_nginx_cannot_parse_gets_its_own_400_and_changes_nothing(host, tunnel, figures):
    """Found by the fuzz (seeds 760052680, 1759103953): a NUL byte in the path.

    nginx rejects it while parsing the request line, before any configuration applies: `error_page 400`
    to a URI or a named location is not consulted at that stage (tried on nginx 1.22; see
    docs/reliability.md), so the answer is nginx's built-in HTML 400 and the connection is closed. What we
    can hold: it is a 400, it never reaches the app, and the service is unaffected.
    """
    assert _nginx_rejects_request_line("/static/%00")
    client = Client(tunnel)
    answer = client.send("GET", "/static/%00", None, {})
    after = client.send("GET", "/readyz", None, {})
    client.close()
    figures.add("bad input: NUL byte in the path (nginx refuses the request line)",
                f"{answer.status} {answer.headers.get('content-type')}, /readyz {after.status} after",
                "400, service unaffected", answer.status == 400 and after.status == 200,
                "nginx's built-in HTML page: error_page does not apply before the request line is parsed")
    assert answer.status == 400, answer.body[:200]
    assert after.status == 200
    assert host.ready()


def test_oversized_bodies_are_stopped_with_413_at_the_published_port(host, limits, figures):
    big = b'{"sequence": "' + b"x" * limits["max_body_bytes"] + b'"}'
    answers = [host.http("POST", "/detect-toxic", big, {"Content-Type": "application/json"}, timeout=30),
               host.http("POST", "/detect-toxic", big, {"Content-Type": "application/json"}, timeout=30, chunked=True)]
    figures.add("bad input: body over the limit (Content-Length / chunked)", " / ".join(str(a.status) for a in answers),
                "413 JSON", all(a.status == 413 and _is_json_error(a) for a in answers))
    for answer in answers:
        assert answer.status == 413, answer.body[:200]
        assert _is_json_error(answer) and answer.json()["error"]["code"] == "payload_too_large", answer.body[:200]
    assert host.ready()


def test_a_burst_beyond_the_rate_limit_gets_json_429(host, figures):
    total, threads = 150, 10  # well past 20 r/s + a burst of 40, within a second or two

    def one(_: int) -> tuple[int, bool, str]:
        answer = host.http("GET", "/livez", timeout=10)
        return answer.status, _is_json_error(answer), answer.headers.get("retry-after", "")

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(one, range(total)))
    elapsed = time.monotonic() - started
    limited = [r for r in results if r[0] == 429]
    others = {r[0] for r in results} - {200, 429}
    figures.add("bad input: burst of 150 requests through the published port", f"{len(limited)} x 429 in {elapsed:.1f} s",
                ">= 1 x 429 (JSON, Retry-After)", bool(limited) and all(r[1] and r[2] for r in limited),
                f"{total - len(limited)} x 200")
    assert limited, f"no 429 in {total} requests in {elapsed:.1f} s"
    assert all(is_json and retry for _, is_json, retry in limited), limited[:3]
    assert not others, f"unexpected statuses {others}"
    time.sleep(3)  # let the bucket refill for whatever runs next
