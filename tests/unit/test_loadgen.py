"""tools/loadgen.py against a stand-in service on loopback: labels read from /readyz, readiness, stalls, the percentile.

The stand-in answers /readyz and /detect-toxic the way the service does (the label list, one score per label), so
each claim the deploy and reliability suites lean on is checked here without a container: a bundle with seven
labels is scored ok, a body missing a label is not, the ready signal comes only after a success, and a 5 s stall
fails the deploys' latency bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tools import loadgen  # noqa: E402
from tools.fabhost import LATENCY_CAP_MS, latency_limit_ms, latency_verdict  # noqa: E402

SIX = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
SEVEN = [*SIX, "sarcasm"]


class StandIn(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the generator's threads all connect at once after a stall

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.announced = list(SIX)  # what /readyz says
        self.answered: list[str] | None = None  # labels in each prediction (None: the announced ones)
        self.fail_first = 0  # answer 503 to this many scoring requests first
        self.stall_after: int | None = None  # after this many scoring requests, hold every request for stall_s
        self.stall_s = 0.0
        self.stall_until = 0.0
        self.scored = 0
        self.ok = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class Handler(BaseHTTPRequestHandler):
    server: StandIn

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, {"status": "ready", "labels": self.server.announced})

    def do_POST(self) -> None:
        srv = self.server
        self.rfile.read(int(self.headers["Content-Length"]))
        with srv.lock:
            srv.scored += 1
            n = srv.scored
            if srv.stall_after is not None and n == srv.stall_after + 1:
                srv.stall_until = time.monotonic() + srv.stall_s  # a restart: everything queues until it ends
            wait = srv.stall_until - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if n <= srv.fail_first:
            self._send(503, {"error": {"code": "not_ready"}})
            return
        labels = srv.answered if srv.answered is not None else srv.announced
        with srv.lock:
            srv.ok += 1
        self._send(200, {"prediction": {label: 0.25 for label in labels}})


@pytest.fixture
def service() -> Iterator[StandIn]:
    srv = StandIn()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def run(service: StandIn, rate: float = 40.0, seconds: float = 1.5, on_ready=None) -> dict:
    target = loadgen.Target(service.url, "localhost", 10.0, keep_alive=False)
    labels = loadgen.Labels(target, wait_seconds=5)
    return loadgen.constant(target, labels, loadgen.bodies_of(loadgen.TEXTS), rate, seconds, threads=16, grace=10,
                            on_ready=on_ready)


def test_percentile_interpolates_between_ranks_and_is_the_one_bench_uses() -> None:
    assert loadgen.percentile([40, 10, 30, 20], 50) == 25
    assert loadgen.percentile([10, 20, 30, 40], 0) == 10 and loadgen.percentile([10, 20, 30, 40], 100) == 40
    assert loadgen.percentile(list(range(101)), 99) == 99
    assert loadgen.percentile([7.0], 99) == 7.0
    assert loadgen.percentile([], 50) is None
    import bench

    assert bench.percentile is loadgen.percentile


def test_a_seven_label_bundle_is_scored_ok(service: StandIn) -> None:
    service.announced = list(SEVEN)
    result = run(service)
    assert result["labels"] == sorted(SEVEN)
    assert result["sent"] > 0 and result["errors"] == 0, result["failures"]


def test_a_prediction_missing_a_label_of_the_bundle_is_a_failure(service: StandIn) -> None:
    service.announced, service.answered = list(SEVEN), list(SIX)
    result = run(service)
    assert result["ok"] == 0 and result["errors"] == result["sent"] > 0
    assert result["failures"] == {"bad body": result["sent"]}


def test_a_switch_to_another_label_set_announced_on_readyz_is_followed(service: StandIn) -> None:
    target = loadgen.Target(service.url, "localhost", 10.0, keep_alive=True)
    labels = loadgen.Labels(target, wait_seconds=5)
    assert labels.accepts(frozenset(SIX))
    service.announced = list(SEVEN)  # a model deploy: the new bundle has seven labels
    assert labels.accepts(frozenset(SEVEN))
    assert not labels.accepts(frozenset(["toxic"]))


def test_ready_is_signalled_once_after_the_first_successful_request(service: StandIn) -> None:
    service.fail_first = 5
    calls: list[int] = []
    result = run(service, on_ready=lambda after: calls.append(service.ok))
    assert len(calls) == 1 and calls[0] >= 1, calls
    assert result["failures"] == {"http 503": 5}


def test_a_5_s_stall_fails_the_deploy_latency_bound_and_normal_load_passes(service: StandIn) -> None:
    baseline = run(service, seconds=2.0)
    assert latency_verdict(baseline, baseline)[0], "the same load without a stall is within the bound"
    service.stall_after, service.stall_s = service.scored + 10, 5.0
    stalled = run(service, seconds=2.0)
    within, text = latency_verdict(stalled, baseline)
    assert stalled["errors"] == 0 and stalled["max_ms"] >= 5000, (stalled["max_ms"], stalled["error_list"])
    assert not within, text
    assert latency_limit_ms(10_000.0) == LATENCY_CAP_MS < 5000, "however slow the baseline, 5 s stays over the limit"


def test_the_script_runs_standalone_with_comments_on_stdin(service: StandIn) -> None:
    comments = json.dumps(["you are lovely", "you are an idiot"])
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "loadgen.py"), "--url", service.url, "--connection", "close",
                           "--comments-file", "-", "closed", "--threads", "2", "--duration", "0.5", "--max-requests", "20"],
                          input=comments, capture_output=True, text=True, timeout=60, check=False, cwd="/")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["ok"] == 20 and result["errors"] == 0, result


def test_no_label_list_on_readyz_stops_the_generator_with_a_message(service: StandIn) -> None:
    service.announced = []
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "loadgen.py"), "--url", service.url, "--ready-wait", "1",
                           "constant", "--rate", "5", "--duration", "1"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "gave no label set" in proc.stderr and "/readyz" in proc.stderr, proc.stderr
