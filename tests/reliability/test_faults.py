"""Faults under load: a worker killed, the master killed, the vocabulary store gone, the container restarted.

Each fault happens while the in-container generator sends a constant load
through nginx (half the measured maximum: headroom for the backlog a restart
builds). Requests that fail are counted and compared with what could have been
in flight: gunicorn's sync workers serve one request each.
Reproduce: TOXIC_RELIABILITY_PROFILE=short .venv/bin/pytest tests/reliability/test_faults.py
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
from relhost import HostError, wait_until

FAULT_LOAD_FRACTION = 0.5
SETTLE_S = 5  # load before the fault, so the fault hits a service in steady state


def _kill(host, pid: int) -> float:
    host.exec("kill", "-9", str(pid))
    return time.time()


def _kill_a_worker(host, master: int) -> tuple[int, float]:
    """kill -9 of a worker of `master`, listed just before: (its pid, when).

    Under load gunicorn recycles each worker every minute or so (max_requests), so a
    worker listed a moment ago may have exited by itself: then list again, a bounded
    number of times.
    """
    for _ in range(3):
        workers = host.worker_pids(master)
        if workers:
            victim = workers[0]
            if host.exec("kill", "-9", str(victim), check=False).returncode == 0:
                return victim, time.time()
        time.sleep(0.2)
    raise HostError(f"no worker of master {master} could be killed in 3 tries (last seen: {workers})")


def _unseen_word_request(host):
    """A comment whose words no worker has cached: it must reach the vocabulary store."""
    body = json.dumps({"sequence": f"zq{uuid.uuid4().hex} xv{uuid.uuid4().hex}"}).encode()
    return host.http("POST", "/detect-toxic", body, {"Content-Type": "application/json"})


def _errors_between(result: dict, start: float, end: float) -> list[dict]:
    return [e for e in result["error_list"] if start <= e["t"] <= end]


def test_kill_9_of_one_worker_fails_only_its_request_in_flight_and_is_replaced(host, load, max_rate, profile, figures):
    master = host.main_pid()
    before = host.worker_pids(master)
    assert len(before) >= 2, f"expected gunicorn workers under master {master}, found {before}"
    run = load.start(FAULT_LOAD_FRACTION * max_rate, profile.fault_load_seconds, "fault-worker")
    time.sleep(SETTLE_S)
    victim, killed_at = _kill_a_worker(host, master)
    replaced_s = wait_until("a new worker replacing the killed one",
                            lambda: len(now := host.worker_pids(master)) == len(before) and victim not in now, 30)
    time.sleep(5)
    result = run.finish(stop=True)
    after_master = host.main_pid()

    in_flight = 1  # one sync worker, one request
    figures.add("fault: kill -9 one worker -> failed requests", f"{result['errors']} of {result['sent']}",
                f"<= {in_flight} (its request in flight)", result["errors"] <= in_flight,
                "; ".join(f"{e['status']} {e['detail'][:60]}" for e in result["error_list"][:3]))
    figures.add("fault: kill -9 one worker -> replaced after", f"{replaced_s:.1f} s", "replaced", True,
                f"master {master} unchanged: {after_master == master}")
    assert after_master == master, "killing a worker must not restart the master"
    assert result["errors"] <= in_flight, f"failed beyond the one in flight: {result['error_list'][:10]}"
    late = [e for e in result["error_list"] if e["t"] > killed_at + 2 or e["t"] < killed_at - 1]
    assert not late, f"failures away from the kill at {killed_at:.2f}: {late}"


def test_kill_of_the_master_is_restarted_by_systemd_within_5_s(host, load, max_rate, profile, figures):
    master = host.main_pid()
    workers = host.worker_pids(master)
    run = load.start(FAULT_LOAD_FRACTION * max_rate, profile.fault_load_seconds, "fault-master")
    time.sleep(SETTLE_S)
    killed_at = _kill(host, master)
    restarted_s = wait_until("systemd starting a new gunicorn master",
                             lambda: host.main_pid() not in (0, master), 30, interval=0.1)
    active_s = wait_until("toxic-service active again",
                          lambda: host.unit_property("toxic-service", "ActiveState") == "active", 60)
    ready_s = wait_until("/readyz 200 again", host.ready, 60)
    time.sleep(5)
    result = run.finish(stop=True)
    restarts = host.unit_property("toxic-service", "NRestarts")

    in_flight = len(workers)
    errors = result["errors"]
    figures.add("fault: kill -9 master -> new master started by systemd", f"{restarted_s:.1f} s", "<= 5 s", restarted_s <= 5,
                f"active (READY=1) after {active_s:.1f} s more; /readyz 200 after {ready_s:.1f} s more; NRestarts={restarts}")
    figures.add("fault: kill -9 master -> failed requests", f"{errors} of {result['sent']}",
                f"<= {in_flight} (one per worker in flight)", errors <= in_flight,
                f"queued on systemd's socket meanwhile: p99 {result['p99_ms']} ms, max {result['max_ms']} ms")
    assert restarted_s <= 5, f"systemd took {restarted_s:.1f} s to start a new master"
    assert errors <= in_flight, f"{errors} failures, more than the {in_flight} in flight: {result['error_list'][:10]}"
    assert not [e for e in result["error_list"] if e["t"] < killed_at - 1], "failures before the kill"


def _vocab_path(host) -> str:
    env = host.exec("cat", "/etc/toxic-service/toxic.env").stdout
    configured = next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith("TOXIC_SQLITE_PATH="))
    return host.exec("readlink", "-f", configured).stdout.strip()


def test_vocabulary_store_unavailable_gives_json_503_and_recovers_by_itself(host, load, max_rate, profile, figures):
    path = _vocab_path(host)
    away = path + ".reliability-away"
    master = host.main_pid()
    assert _unseen_word_request(host).status == 200
    run = load.start(FAULT_LOAD_FRACTION * max_rate, profile.fault_load_seconds, "fault-vocab")
    time.sleep(SETTLE_S)
    down_at = time.time()
    host.exec("mv", path, away)
    try:
        wait_until("/readyz 503 with the store gone", lambda: host.http("GET", "/readyz").status == 503, 10)
        ready = host.http("GET", "/readyz")
        scored = _unseen_word_request(host)
        time.sleep(3)
        scored_later = _unseen_word_request(host)
    finally:
        host.exec("mv", away, path)
        back_at = time.time()
    recovered_s = wait_until("/readyz 200 with the store back", host.ready, 30)
    recovered = _unseen_word_request(host)
    time.sleep(3)
    result = run.finish(stop=True)

    outage_errors = _errors_between(result, down_at, back_at + recovered_s + 1)
    other_errors = [e for e in result["error_list"] if e not in outage_errors]
    figures.add("fault: vocabulary store gone -> /readyz and uncached request",
                f"{ready.status} {ready.json()['error']['code']} / {scored.status} {scored.json()['error']['code']}",
                "JSON 503", ready.status == 503 and scored.status == 503 and scored_later.status == 503,
                f"load with cached words meanwhile: {result['errors']} of {result['sent']} failed")
    figures.add("fault: vocabulary store back -> recovered by itself after", f"{recovered_s:.1f} s",
                "recovers, no restart", recovered.status == 200 and host.main_pid() == master)
    assert ready.status == 503 and ready.json()["error"]["code"] in ("store_unavailable", "not_ready"), ready.body
    for answer in (scored, scored_later):
        assert answer.status == 503, answer.body
        assert answer.json()["error"]["code"] == "store_unavailable", answer.body
        assert answer.headers["content-type"].startswith("application/json")
    assert recovered.status == 200, recovered.body
    assert host.main_pid() == master, "the service was restarted; it should have recovered by itself"
    assert not other_errors, f"load failures outside the outage: {other_errors[:5]}"
    assert all(e["status"] == 503 and "store_unavailable" in e["detail"] for e in outage_errors), outage_errors[:5]


def test_container_restart_brings_every_service_back_enabled_and_healthy(host, figures):
    units = ("nftables", "ssh", "nginx", "toxic-service.socket", "toxic-service")
    started = time.monotonic()
    proc = subprocess.run(["docker", "restart", "--time", "30", host.name], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    try:
        state_s = wait_until("systemd finished booting",
                             lambda: host.exec("systemctl", "is-system-running", check=False).stdout.strip()
                             in ("running", "degraded"), 90)
        ready_s = wait_until("/readyz 200 through nginx", host.ready, 120)
    except HostError as exc:
        failed = host.exec("systemctl", "--failed", "--no-legend", "--plain", check=False).stdout
        pytest.fail(f"{exc}; failed units: {failed}")
    total_s = time.monotonic() - started
    system = host.exec("systemctl", "is-system-running", check=False).stdout.strip()
    failed = host.exec("systemctl", "--failed", "--no-legend", "--plain", check=False).stdout.strip()
    states = {u: (host.exec("systemctl", "is-enabled", u, check=False).stdout.strip(),
                  host.exec("systemctl", "is-active", u, check=False).stdout.strip()) for u in units}
    scored = host.http("POST", "/detect-toxic", b'{"sequence": "you are an idiot"}', {"Content-Type": "application/json"})
    host.install_tools()  # /root survives a restart, but be sure for the tests that follow

    healthy = all(s == ("enabled", "active") for s in states.values()) and system == "running" and scored.status == 200
    figures.add("fault: container restart -> ready again", f"{total_s:.1f} s (systemd {state_s:.1f} s, /readyz {ready_s:.1f} s)",
                "every unit enabled + active, system running", healthy,
                f"system {system}; " + ", ".join(f"{u} {e}/{a}" for u, (e, a) in states.items()))
    assert system == "running", f"systemd says {system}; failed units: {failed}"
    for unit, (enabled, active) in states.items():
        assert (enabled, active) == ("enabled", "active"), f"{unit}: {enabled}/{active}"
    assert scored.status == 200 and "prediction" in scored.json(), scored.body
