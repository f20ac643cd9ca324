"""molecule/shared/tasks/check_scores.yml, the score check both molecule verifies run.

Run through ansible-playbook on localhost against real `toxic-service serve` processes
(the tox-block bundle `make assets` builds, and the tiny fixture bundle with seven
labels), and against a canned HTTP server for answers a broken deployment could give:
wrongly ordered scores, the "any six numbers in [0, 1]" the old verifies accepted, a
/readyz label set that is not the bundle's, a row missing a label.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gunicorn_server  # noqa: E402
from fixtures_builder import LABELS, build_tiny_fixtures  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
TOX_BLOCK = REPO / ".cache" / "assets" / "tox-block"

PLAYBOOK = f"""\
- name: Run the molecule score check
  hosts: all
  connection: local
  gather_facts: false
  tasks:
    - name: Check the scores
      ansible.builtin.include_tasks: {REPO}/molecule/shared/tasks/check_scores.yml
      vars:
        check_scores_bundle: "{{{{ lookup('ansible.builtin.file', bundle_metadata) | from_json }}}}"
"""


def run_checks(tmp: Path, cases: dict[str, tuple[str, Path]]) -> subprocess.CompletedProcess:
    """One ansible-playbook run, one inventory host per case: name -> (service URL, metadata.json)."""
    hosts = {name: {"check_scores_url": url, "bundle_metadata": str(meta)} for name, (url, meta) in cases.items()}
    inventory = {"all": {"hosts": hosts, "vars": {"ansible_python_interpreter": sys.executable}}}
    (tmp / "inventory.json").write_text(json.dumps(inventory))
    (tmp / "play.yml").write_text(PLAYBOOK)
    env = dict(os.environ)
    env.update(
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
    )
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(tmp / "inventory.json"), str(tmp / "play.yml")],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def run_check(tmp: Path, url: str, metadata: Path) -> subprocess.CompletedProcess:
    return run_checks(tmp, {"service": (url, metadata)})


def serve(tmp: Path, bundle: Path, vocab: Path) -> gunicorn_server.Server:
    env = gunicorn_server.base_env(bundle, vocab, tmp / "data")
    return gunicorn_server.start(env, tmp / "gunicorn.log", workers=1)


@pytest.mark.skipif(not (TOX_BLOCK / "model" / "metadata.json").is_file(), reason="make assets builds tox-block")
def test_a_real_model_passes(tmp_path):
    server = serve(tmp_path, TOX_BLOCK / "model", TOX_BLOCK / "vocab.sqlite")
    try:
        result = run_check(tmp_path, server.url, TOX_BLOCK / "model" / "metadata.json")
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-4000:]
    assert "abusive max 0.99" in result.stdout


def test_a_seven_label_bundle_passes(tmp_path):
    seven = build_tiny_fixtures(labels=LABELS + ("spam",))
    server = serve(tmp_path, seven.bundle_dir, seven.sqlite_path)
    try:
        result = run_check(tmp_path, server.url, seven.bundle_dir / "metadata.json")
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-4000:]
    assert "'spam'" in result.stdout


class Canned:
    """A stand-in service answering /readyz and /detect-toxic with fixed JSON."""

    def __init__(self, labels: list[str], rows: list[dict]) -> None:
        answers = {"/readyz": {"status": "ready", "labels": labels}, "/detect-toxic": {"predictions": rows}}

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = json.dumps(answers[self.path]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self._answer()

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._answer()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def metadata_file(tmp: Path, labels: list[str], trained: list[str] | None = None) -> Path:
    path = tmp / "metadata.json"
    path.write_text(json.dumps({"labels": labels, "trained_labels": trained or labels}))
    return path


def scores(labels: list[str], value: float) -> dict:
    return dict.fromkeys(labels, value)


SIX = list(LABELS)


# name: (labels /readyz reports, the two rows of scores, the bundle's labels, its trained labels)
BROKEN = {
    "wrong-order": (SIX, [scores(SIX, 0.9), scores(SIX, 0.05)], SIX, None),
    "any-six-numbers-in-0-1": (SIX, [scores(SIX, 0.5), scores(SIX, 0.5)], SIX, None),
    "barely-apart": (SIX, [scores(SIX, 0.3), scores(SIX, 0.6)], SIX, None),
    "readyz-labels-not-the-bundles": (SIX[:5], [scores(SIX, 0.0), scores(SIX, 0.99)], SIX, None),
    "a-row-lacks-a-label": (SIX, [scores(SIX[:5], 0.0), scores(SIX, 0.99)], SIX, None),
    "seven-label-bundle-six-served": (SIX, [scores(SIX, 0.0), scores(SIX, 0.99)], [*SIX, "spam"], None),
    # Only `insult` was learned: an untrained label's high score proves nothing.
    "abusive-only-on-an-untrained-label": (SIX, [scores(SIX, 0.0), {**scores(SIX, 0.1), "toxic": 0.99}], SIX, ["insult"]),
}
# The canned server itself is not what fails the cases above.
GOOD = {"good-insult-only-model": (SIX, [scores(SIX, 0.01), {**scores(SIX, 0.1), "insult": 0.97}], SIX, ["insult"])}


def test_broken_answers_fail_and_a_good_one_passes(tmp_path):
    servers, cases = [], {}
    try:
        for name, (served, rows, bundle_labels, trained) in {**BROKEN, **GOOD}.items():
            server = Canned(served, rows)
            servers.append(server)
            case_dir = tmp_path / name
            case_dir.mkdir()
            cases[name] = (server.url, metadata_file(case_dir, bundle_labels, trained))
        result = run_checks(tmp_path, cases)
    finally:
        for server in servers:
            server.close()
    recap = result.stdout.split("PLAY RECAP")[-1]
    failed = {line.split()[0] for line in recap.splitlines() if "failed=1" in line}
    assert failed == set(BROKEN), result.stdout[-5000:]
    for name in BROKEN:
        assert f"fatal: [{name}]: FAILED!" in result.stdout
    assert result.stdout.count("want /readyz and every row to carry exactly the bundle's labels") >= len(BROKEN)
