"""API keys and quotas: the keys file, `toxic-service keys`, the per-request check on both APIs, reload, secrecy.

Everything is real: the CLI through click's runner, the keys file on disk, the
SQLite buckets, the app through Flask's test client with the tiny model.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import stat
import time

import pytest
from click.testing import CliRunner
from toxic_service.api import create_app, metrics
from toxic_service.apikeys import keyfile
from toxic_service.apikeys.gate import Gate
from toxic_service.apikeys.quota import QuotaStore, state_path
from toxic_service.cli import main as cli

ANALYZE = "/v1alpha1/comments:analyze"
ANALYZE_BODY = {"comment": {"text": "you idiot"}, "requestedAttributes": {"TOXICITY": {}}}


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, ["keys", *args], env=env)


def create(path, name: str, *extra: str) -> str:
    result = run("create", name, "--file", str(path), *extra)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@pytest.fixture()
def keys_file(tmp_path):
    return tmp_path / "api-keys.json"


# --- the keys file and the CLI ------------------------------------------------------------------------------


def test_create_prints_the_key_once_and_stores_only_its_sha256_in_a_0600_file(keys_file):
    key = create(keys_file, "forum", "--qps", "3")
    assert key.startswith(keyfile.KEY_PREFIX) and len(key) >= 40
    text = keys_file.read_text()
    assert key not in text and key[len(keyfile.KEY_PREFIX):] not in text
    doc = json.loads(text)
    assert doc["keys"]["forum"]["sha256"] == keyfile.key_hash(key)
    assert doc["keys"]["forum"]["qps"] == 3
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert create(keys_file, "blog") != key  # a new random key each time


def test_create_without_qps_takes_the_default_quota_setting(keys_file):
    result = run("create", "bot", "--file", str(keys_file), env={"TOXIC_API_KEYS_DEFAULT_QPS": "7"})
    assert result.exit_code == 0, result.output
    assert json.loads(keys_file.read_text())["keys"]["bot"]["qps"] == 7


def test_list_shows_names_quotas_created_and_last_use_never_a_key_or_hash(keys_file):
    key = create(keys_file, "forum", "--qps", "2")
    QuotaStore(state_path(keys_file)).take("forum", 2)  # what a worker records on an accepted request
    result = run("list", "--file", str(keys_file))
    assert result.exit_code == 0, result.output
    assert "forum" in result.output and " 2 " in result.output
    assert key not in result.output and keyfile.key_hash(key) not in result.output
    rows = [json.loads(line) for line in run("list", "--file", str(keys_file), "--json").stdout.splitlines()]
    assert rows[0]["name"] == "forum" and rows[0]["qps"] == 2 and rows[0]["last_used"].endswith("Z")
    assert set(rows[0]) == {"name", "qps", "created", "last_used"}


def test_revoke_removes_the_key_from_the_file(keys_file):
    create(keys_file, "forum")
    create(keys_file, "blog")
    result = run("revoke", "forum", "--file", str(keys_file))
    assert result.exit_code == 0, result.output
    assert set(json.loads(keys_file.read_text())["keys"]) == {"blog"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create", "bad name"), "key name 'bad name' is not valid"),
        (("create", ".dot"), "is not valid"),
        (("create", "x" * 65), "is not valid"),
        (("create", "naïve"), "is not valid"),
        (("create", "_none"), "is not valid"),  # the metric's reserved labels cannot be names
        (("create", "forum"), "exists already"),
        (("create", "new", "--qps", "0"), "--qps"),
        (("create", "new", "--qps", "1000001"), "--qps"),
        (("revoke", "nobody"), "no key named 'nobody'"),
        (("revoke", "bad/name"), "is not valid"),
    ],
)
def test_bad_input_is_one_clear_line_and_leaves_the_file_unchanged(keys_file, args, message):
    create(keys_file, "forum")
    before = keys_file.read_bytes()
    result = run(*args, "--file", str(keys_file))
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert keys_file.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "x", "version": 1, "keys": {}}', "expected an object with format"),
        ('{"format": "toxic-service api keys", "version": 1, "keys": {"a": {"sha256": "00", "qps": 1, "created": ""}}}',
         "keys.a.sha256"),
        ('{"format": "toxic-service api keys", "version": 1, "keys": {"a": {"sha256": "' + "0" * 64
         + '", "qps": 1, "created": "", "qsp": 2}}}', "keys.a: must be an object with exactly"),
        ('{"format": "toxic-service api keys", "version": 1, "keys": {"a": {"sha256": "' + "0" * 64
         + '", "qps": 1.5, "created": ""}}}', "keys.a.qps"),
        ('{"format": "toxic-service api keys", "version": 1, "keys": {"a": {}, "a": {}}}', "appears twice"),
    ],
)
def test_a_malformed_keys_file_is_named_with_its_field_and_not_rewritten(keys_file, content, message):
    keys_file.write_text(content)
    for args in (("list",), ("create", "new"), ("revoke", "a")):
        result = run(*args, "--file", str(keys_file))
        assert result.exit_code == 1 and message in result.output and str(keys_file) in result.output, result.output
    assert keys_file.read_text() == content


def test_no_keys_file_configured_is_a_usage_error(monkeypatch):
    monkeypatch.delenv("TOXIC_API_KEYS_FILE", raising=False)
    result = run("list")
    assert result.exit_code == 2 and "TOXIC_API_KEYS_FILE" in result.output


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_as_root_the_file_goes_to_owner_and_later_edits_keep_that_owner(keys_file):
    nobody = pwd.getpwnam("nobody")
    create(keys_file, "forum", "--owner", "nobody")
    assert keys_file.stat().st_uid == nobody.pw_uid
    create(keys_file, "blog")  # root again, no --owner: the service user must still read it
    assert keys_file.stat().st_uid == nobody.pw_uid and stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    result = run("create", "x", "--file", str(keys_file), "--owner", "no-such-user-here")
    assert result.exit_code == 1 and "no such user" in result.output


# --- the quota buckets ----------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_holds_one_second_of_quota_and_refills_at_the_quota_rate(tmp_path):
    clock = Clock()
    store = QuotaStore(tmp_path / "q.sqlite", clock=clock)
    assert [store.take("k", 2).allowed for _ in range(3)] == [True, True, False]
    assert store.take("k", 2).retry_after == 1
    clock.now += 0.5  # one token back at 2 per second
    assert [store.take("k", 2).allowed for _ in range(2)] == [True, False]
    clock.now += 100  # capped at the burst, not 200 tokens
    assert sum(store.take("k", 2).allowed for _ in range(10)) == 2
    clock.now -= 50  # a clock stepped back refills nothing and takes nothing away
    assert not store.take("k", 2).allowed


def test_two_stores_on_one_file_share_the_bucket_as_workers_do(tmp_path):
    clock = Clock()
    first, second = (QuotaStore(tmp_path / "q.sqlite", clock=clock) for _ in range(2))
    results = [store.take("k", 3).allowed for store in (first, second, first, second)]
    assert results == [True, True, True, False]
    assert second.take("other", 1).allowed  # another key has its own bucket
    assert (tmp_path / "q.sqlite").exists() and first.last_used()["k"] == clock.now


# --- the check on the app --------------------------------------------------------------------------------------


@pytest.fixture()
def make_client(tiny_settings):
    def build(keys_file, **settings):
        app = create_app(tiny_settings.replace(api_keys_file=keys_file, **settings))
        return app.test_client()

    return build


def analyze(client, query: str = "", **headers):
    return client.post(ANALYZE + query, json=ANALYZE_BODY, headers=headers)


def test_perspective_missing_and_unknown_keys_get_googles_answers(keys_file, make_client):
    create(keys_file, "forum")
    client = make_client(keys_file, api_keys_required=True)
    missing = analyze(client)
    assert missing.status_code == 403
    assert missing.get_json() == {
        "error": {"code": 403, "message": "The request is missing a valid API key.", "status": "PERMISSION_DENIED"}
    }
    for response in (analyze(client, "?key=tsk_nope"), analyze(client, **{"X-Goog-Api-Key": "nope"})):
        assert response.status_code == 400
        error = response.get_json()["error"]
        assert error["status"] == "INVALID_ARGUMENT"
        assert error["message"] == "API key not valid. Please pass a valid API key."
        assert error["details"][0]["reason"] == "API_KEY_INVALID"
        assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"


def test_perspective_accepts_a_known_key_in_each_place_a_client_sends_it(keys_file, make_client):
    key = create(keys_file, "forum", "--qps", "100")
    client = make_client(keys_file, api_keys_required=True)
    for response in (
        analyze(client, f"?key={key}"),
        analyze(client, **{"X-Goog-Api-Key": key}),
        analyze(client, Authorization=f"Bearer {key}"),
        analyze(client, **{"X-Api-Key": key}),
    ):
        assert response.status_code == 200, response.get_data(as_text=True)
        assert "attributeScores" in response.get_json()
    assert client.get("/$discovery/rest?version=v1alpha1").status_code == 200  # no key, as Google's


def test_over_quota_is_429_resource_exhausted_with_retry_after(keys_file, make_client):
    key = create(keys_file, "forum", "--qps", "1")
    client = make_client(keys_file, api_keys_required=True)
    answers = [analyze(client, f"?key={key}") for _ in range(3)]
    assert answers[0].status_code == 200
    refused = answers[-1]
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    error = refused.get_json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED" and "'forum'" in error["message"]
    assert {"reason": "RATE_LIMIT_EXCEEDED"}.items() <= error["details"][0].items()


def test_keys_not_required_any_key_passes_but_a_known_key_keeps_its_quota(keys_file, make_client):
    key = create(keys_file, "forum", "--qps", "1")
    client = make_client(keys_file, api_keys_required=False)
    for _ in range(3):
        assert analyze(client, "?key=anything-at-all").status_code == 200
        assert analyze(client).status_code == 200
    assert [analyze(client, f"?key={key}").status_code for _ in range(2)] == [200, 429]


def test_native_api_needs_a_key_only_when_asked(keys_file, make_client):
    key = create(keys_file, "forum", "--qps", "1")
    body = {"sequence": "you idiot"}
    assert make_client(keys_file).post("/detect-toxic", json=body).status_code == 200
    client = make_client(keys_file, api_keys_native=True)
    missing = client.post("/detect-toxic", json=body)
    assert missing.status_code == 401 and missing.get_json()["error"]["code"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    unknown = client.post("/detect-toxic", json=body, headers={"X-Api-Key": "tsk_nope"})
    assert unknown.status_code == 403 and unknown.get_json()["error"]["code"] == "forbidden"
    assert client.post("/detect-toxic", json=body, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    over = client.post("/detect-toxic", json=body, headers={"X-Api-Key": key})
    assert over.status_code == 429 and over.get_json()["error"]["code"] == "quota_exceeded"
    assert over.headers["Retry-After"] == "1"


def test_create_and_revoke_act_on_a_running_app_without_a_restart(keys_file, make_client):
    client = make_client(keys_file, api_keys_required=True)
    assert analyze(client, "?key=tsk_later").status_code == 400  # no file yet: nothing is known
    key = create(keys_file, "forum", "--qps", "100")
    assert analyze(client, f"?key={key}").status_code == 200
    assert run("revoke", "forum", "--file", str(keys_file)).exit_code == 0
    revoked = analyze(client, f"?key={key}")
    assert revoked.status_code == 400 and revoked.get_json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"


def test_a_broken_keys_file_fails_closed_and_never_revives_a_revoked_key(keys_file, make_client):
    key = create(keys_file, "forum", "--qps", "100")
    client = make_client(keys_file, api_keys_required=True)
    assert analyze(client, f"?key={key}").status_code == 200
    good = keys_file.read_text()
    keys_file.write_text(good.replace("{", "[", 1))  # a hand edit gone wrong
    broken = analyze(client, f"?key={key}")
    assert broken.status_code == 500 and broken.get_json()["error"]["status"] == "INTERNAL"
    keys_file.write_text(good)
    assert analyze(client, f"?key={key}").status_code == 200


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        from toxic_service.logs import JsonFormatter

        self.lines.append(JsonFormatter().format(record))


def test_no_key_or_hash_in_logs_metrics_or_error_bodies_and_unknown_keys_share_one_label(keys_file, make_client):
    key = create(keys_file, "leaky", "--qps", "1")
    client = make_client(keys_file, api_keys_required=True, api_keys_native=True)
    unknown = [f"tsk_unknown{i}" for i in range(5)]
    capture = _Capture()
    logger = logging.getLogger("toxic_service")
    logger.addHandler(capture)
    bodies = []
    try:
        for _ in range(2):
            bodies.append(analyze(client, f"?key={key}").get_data(as_text=True))
            bodies.append(client.post("/detect-toxic", json={"sequence": "x"}, headers={"X-Api-Key": key}).get_data(True))
        for other in unknown:
            bodies.append(analyze(client, f"?key={other}").get_data(as_text=True))
        keys_file.write_text("{broken")
        bodies.append(analyze(client, f"?key={key}").get_data(as_text=True))
    finally:
        logger.removeHandler(capture)
    exposition = metrics.render()[0].decode()
    logs = "\n".join(capture.lines)
    assert any('"event": "api_keys"' in line for line in capture.lines)  # the check did log something
    secrets_ = [key, keyfile.key_hash(key), *unknown]
    for where, text in (("logs", logs), ("metrics", exposition), ("bodies", "\n".join(bodies))):
        for secret in secrets_:
            assert secret not in text, (where, secret)
    series = [line for line in exposition.splitlines() if line.startswith("toxic_api_key_requests_total")]
    assert any('key="leaky",outcome="accepted"' in line for line in series), series
    assert any('key="leaky",outcome="over_quota"' in line for line in series), series
    assert any('key="_unknown",outcome="unknown"' in line for line in series), series
    assert all('key="tsk_' not in line for line in series)


def test_the_per_request_check_costs_microseconds(keys_file, tiny_settings):
    """Not a limit, a figure: one stat of the keys file, one SHA-256, one SQLite UPDATE (printed with -s)."""
    key = create(keys_file, "bench", "--qps", "100000")
    gate = Gate(tiny_settings.replace(api_keys_file=keys_file))
    gate.check(key, True)
    n = 2000
    started = time.perf_counter()
    for _ in range(n):
        assert gate.check(key, True).outcome == "accepted"
    per_check = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for _ in range(n):
        os.stat(keys_file)
    per_stat = (time.perf_counter() - started) / n
    print(f"\nkey + quota check: {per_check * 1e6:.0f} us per request (of which the keys file's stat {per_stat * 1e6:.1f} us)")
    assert per_check < 0.05  # 50 ms would mean something is badly wrong (a lock wait, a re-read per request)


def test_suggestscore_records_the_keys_name_never_the_key(keys_file, make_client, tmp_path):
    from toxic_service.feedback.store import FeedbackStore

    key = create(keys_file, "forum", "--qps", "100")
    feedback = tmp_path / "feedback.sqlite"
    client = make_client(keys_file, api_keys_required=True, feedback_db=feedback)
    body = {"comment": {"text": "you idiot"}, "attributeScores": {"TOXICITY": {"summaryScore": {"value": 1.0}}}}
    refused = client.post("/v1alpha1/comments:suggestscore", json=body)
    assert refused.status_code == 403  # the key check runs before anything is stored
    stored = client.post(f"/v1alpha1/comments:suggestscore?key={key}", json=body)
    assert stored.status_code == 200, stored.get_data(as_text=True)
    rows = list(FeedbackStore(feedback, 1 << 20).suggestions())
    assert [row.key_name for row in rows] == ["forum"]
    assert key.encode() not in feedback.read_bytes()


@pytest.mark.parametrize(
    "headers", [{"X-Api-Key": "   "}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer"}, {}]
)
def test_blank_keys_and_other_auth_schemes_count_as_no_key(keys_file, make_client, headers):
    create(keys_file, "forum")
    client = make_client(keys_file, api_keys_native=True)
    response = client.post("/detect-toxic", json={"sequence": "x"}, headers=headers)
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"


def test_an_unwritable_quota_state_is_a_500_whose_log_names_the_file_never_the_key(tmp_path, make_client):
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    keys_file = keys_dir / "api-keys.json"
    key = create(keys_file, "forum")
    state = state_path(keys_file)
    state.mkdir()  # a directory where the SQLite file should be: it cannot be opened
    client = make_client(keys_file, api_keys_required=True)
    capture = _Capture()
    logging.getLogger("toxic_service").addHandler(capture)
    try:
        response = analyze(client, f"?key={key}")
    finally:
        logging.getLogger("toxic_service").removeHandler(capture)
    assert response.status_code == 500 and response.get_json()["error"]["status"] == "INTERNAL"
    logs = "\n".join(capture.lines)
    assert str(state) in logs and key not in logs
    state.rmdir()
    assert analyze(client, f"?key={key}").status_code == 200  # fixed in place: no restart


# --- the Ansible role writes the same file ------------------------------------------------------------------


def _render_with_the_role(tmp_path, extra_vars: dict) -> tuple[str, str]:
    """toxic.env and the keys file's content as roles/toxic_service renders them (its defaults, Ansible itself)."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    role = Path(__file__).resolve().parents[2] / "roles" / "toxic_service"
    env_out, keys_out = tmp_path / "toxic.env", tmp_path / "api-keys.json"
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars_files": [str(role / "defaults" / "main.yml")],
             "tasks": [{"ansible.builtin.template": {"src": str(role / "templates" / "toxic.env.j2"),
                                                     "dest": str(env_out), "mode": "0600"}},
                       {"ansible.builtin.copy": {"content": "{{ __toxic_service_api_keys_json }}\n",
                                                 "dest": str(keys_out), "mode": "0600"}}]}]  # fmt: skip
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "extra.json").write_text(json.dumps({"ansible_python_interpreter": sys.executable, **extra_vars}))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_HOME=str(tmp_path / "home"),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))  # fmt: skip
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", str(tmp_path / "play.yml"),
         "-e", f"@{tmp_path / 'extra.json'}"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    return env_out.read_text(), keys_out.read_text()


def test_the_role_writes_a_keys_file_the_service_reads_and_the_settings_that_point_at_it(tmp_path, monkeypatch):
    key = keyfile.new_key()
    vault = [{"name": "forum", "sha256": keyfile.key_hash(key), "qps": 5}, {"name": "bot", "sha256": "0" * 64}]
    env_text, keys_text = _render_with_the_role(tmp_path, {"toxic_api_keys": vault, "toxic_api_keys_required": True})
    entries = keyfile.parse(keys_text, tmp_path / "api-keys.json")
    assert {e.name: e.qps for e in entries.values()} == {"forum": 5, "bot": 1}
    assert entries["forum"].sha256 == keyfile.key_hash(key)
    settings = dict(line.split("=", 1) for line in env_text.splitlines() if line.startswith("TOXIC_API_KEYS"))
    assert settings == {
        "TOXIC_API_KEYS_FILE": "/srv/toxic-service/shared/api-keys/api-keys.json",
        "TOXIC_API_KEYS_REQUIRED": "true",
        "TOXIC_API_KEYS_NATIVE": "false",
        "TOXIC_API_KEYS_DEFAULT_QPS": "1",
    }
    from toxic_service.settings import Settings

    for variable, value in settings.items():
        monkeypatch.setenv(variable, value)
    parsed = Settings()  # the service reads what the role wrote
    assert parsed.api_keys_required is True and parsed.api_keys_native is False
