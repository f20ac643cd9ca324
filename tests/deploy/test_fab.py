"""`fab deploy`, `fab deploy-model` and `fab rollback` against a provisioned container, over SSH, under load.

During every deploy and rollback a constant 40 requests/s of real scoring
requests runs through nginx inside the container (tools/loadgen.py; inside,
because nginx rate-limits every client address but loopback), started before
the operation and judged after it: no request may fail, and the slowest may
take no longer than tools/fabhost.py's latency_limit_ms of the same load's p99
with no deploy running (measured once per session, `baseline_load`). After
every refusal the host's release layout (current, releases/, shared/models/)
must be exactly as before.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tools.fabhost import REPO, FabHost, FabResult, SourceRepo, latency_limit_ms, latency_verdict, record

H5 = REPO / ".cache" / "assets" / "src" / "lstm_model_0.1.2.h5"
TOKENIZER = REPO / ".cache" / "assets" / "src" / "encoder_0.1.2.pkl"
OTHER_VOCAB = REPO / ".cache" / "assets" / "glove" / "vocab.sqlite"


def assert_ok(result: FabResult) -> None:
    assert result.code == 0, f"fab failed (exit {result.code}):\n{result.text[-3000:]}"


def assert_refused(result: FabResult, phrase: str) -> None:
    assert result.code != 0, f"fab should have refused, but exited 0:\n{result.text[-3000:]}"
    assert re.search(phrase, result.text), f"expected {phrase!r} in the message:\n{result.text[-3000:]}"
    assert "Traceback" not in result.text, f"a traceback instead of a message:\n{result.text[-3000:]}"


def assert_zero_downtime(load: dict, baseline: dict, what: str) -> None:
    """No failed request during `what`, and none slower than the limit derived from the no-deploy baseline."""
    assert "error" not in load, load.get("error")
    assert load["sent"] > 0 and load["ok"] > 0, f"no load ran during {what}: {load}"
    assert load["errors"] == 0, (
        f"{load['errors']} of {load['sent']} requests failed during {what}: {load['failures']} {load['error_list'][:10]}"
    )
    within, text = latency_verdict(load, baseline)
    print(f"{what}: {text}")
    assert within, f"{what}: {text}; p99 per 5 s: {[(i['t'], i['p99_ms']) for i in load['intervals']]}"


def load_figures(load: dict, baseline: dict) -> dict:
    return {"requests": load.get("sent"), "failed": load.get("errors"), "p99_ms": load.get("p99_ms"),
            "max_latency_ms": load.get("max_ms"), "limit_ms": round(latency_limit_ms(baseline["p99_ms"]))}


# --------------------------------------------------------------------------- bad input: clear message, nothing touched


def no_key_inventory(host: FabHost, tmp_path: Path) -> Path:
    inventory = tmp_path / "inventory"
    shutil.copytree(host.inventory, inventory)
    hosts = inventory / "hosts.yml"
    text, count = re.subn(r"(?m)^(\s*ansible_ssh_private_key_file:).*$", r"\g<1> /nonexistent/id_ed25519", hosts.read_text())
    assert count == 1
    hosts.write_text(text)
    return inventory


def dirty_copy(source: SourceRepo, tmp_path: Path) -> SourceRepo:
    dirty = SourceRepo(tmp_path / "dirty")
    shutil.copytree(source.path, dirty.path)
    init = dirty.app / "src" / "toxic_service" / "__init__.py"
    init.write_text(init.read_text() + "# an uncommitted change\n")
    return dirty


BAD_INPUTS = {
    "unknown inventory host": (lambda h, s, t: h.fab("deploy", "--app", str(s.app), "--host", "no-such-host"),
                               r"unknown host 'no-such-host'"),
    "unknown host with -H": (lambda h, s, t: h.fab("deploy", "--app", str(s.app), hosts="deploy@no-such-host.invalid:22"),
                             r"unknown host: cannot resolve 'no-such-host.invalid'"),
    "no SSH key": (lambda h, s, t: h.fab("deploy", "--app", str(s.app), inventory=no_key_inventory(h, t)),
                   r"no SSH key: /nonexistent/id_ed25519"),
    "missing model file": (lambda h, s, t: h.fab("deploy-model", "--app", str(s.app), "--model", str(t / "missing.h5")),
                           r"--model \S*missing\.h5: no such file"),
    "dirty tree": (lambda h, s, t: h.fab("deploy", "--app", str(dirty_copy(s, t).app)), r"refusing to deploy a dirty tree"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_a_clear_message_and_changes_nothing(fab_host: FabHost, source: SourceRepo, tmp_path: Path,
                                                            case: str) -> None:
    action, phrase = BAD_INPUTS[case]
    before = fab_host.snapshot()
    assert_refused(action(fab_host, source, tmp_path), phrase)
    assert fab_host.snapshot() == before


# --------------------------------------------------------------------------- deploys and rollbacks under load


@pytest.fixture(scope="module")
def two_deploys(fab_host: FabHost, source: SourceRepo, baseline_load: dict) -> list[dict]:
    """Two code-only deploys of two real commits, each under load."""
    provisioned = fab_host.snapshot()
    done = []
    for label in ("A", "B"):
        sha = source.code_change(label)
        with fab_host.load() as load:
            result = fab_host.fab("deploy", "--app", str(source.app))
        done.append({"sha": sha, "result": result, "load": load, "after": fab_host.snapshot(), "before": provisioned})
        record(f"deploy {label} (code only)", seconds=round(result.seconds, 1), **load_figures(load, baseline_load))
    return done


def test_deploy_twice_makes_each_commit_live_without_failed_or_stalled_requests(fab_host: FabHost, two_deploys: list[dict],
                                                                               baseline_load: dict) -> None:
    provisioned = two_deploys[0]["before"]
    names = []
    for step in two_deploys:
        assert_ok(step["result"])
        assert_zero_downtime(step["load"], baseline_load, f"the deploy of {step['sha'][:12]}")
        after = step["after"]
        assert after["revision"] == step["sha"], "REVISION must be the deployed commit"
        assert re.fullmatch(r"\d{8}T\d{6}Z", after["current"]), after["current"]
        names.append(after["current"])
    assert len({provisioned["current"], *names}) == 3, "each deploy makes a new release"
    assert {provisioned["current"], *names} <= set(two_deploys[-1]["after"]["releases"]), "earlier releases are kept"
    # Code only: the dependency env of the provisioned release is reused, and only the app wheel travels.
    envs = {fab_host.release_record(n)["env"] for n in [provisioned["current"], *names]}
    assert len(envs) == 1, f"the dependency env was rebuilt for a code-only change: {envs}"
    assert "(1 file(s)" in two_deploys[1]["result"].text, two_deploys[1]["result"].text
    assert fab_host.score_via_nginx()["status"] == 200


def test_rollback_to_the_previous_then_to_a_named_release(fab_host: FabHost, two_deploys: list[dict],
                                                         baseline_load: dict) -> None:
    first, second = (step["after"]["current"] for step in two_deploys)
    assert fab_host.snapshot()["current"] == second
    with fab_host.load() as load:
        result = fab_host.fab("rollback")
    assert_ok(result)
    assert_zero_downtime(load, baseline_load, "the rollback")
    after = fab_host.snapshot()
    assert after["current"] == first and after["revision"] == two_deploys[0]["sha"]
    record("rollback to the previous release", seconds=round(result.seconds, 1), **load_figures(load, baseline_load))

    with fab_host.load() as load:
        result = fab_host.fab("rollback", "--release", second)
    assert_ok(result)
    assert_zero_downtime(load, baseline_load, "the rollback to a named release")
    assert fab_host.snapshot()["current"] == second
    record("rollback to a named release", seconds=round(result.seconds, 1), **load_figures(load, baseline_load))

    refused = fab_host.fab("rollback", "--release", "20000101T000000Z")
    assert_refused(refused, r"no release '20000101T000000Z'")
    assert fab_host.snapshot()["current"] == second


def test_a_release_failing_check_is_never_activated(fab_host: FabHost, source: SourceRepo, tmp_path: Path,
                                                    baseline_load: dict) -> None:
    broken = source.variant(tmp_path / "broken", "broken-check")
    before = fab_host.snapshot()
    with fab_host.load() as load:
        result = fab_host.fab("deploy", "--app", str(broken.app))
    assert_refused(result, r"not activated: `toxic-service check` of \S+ failed")
    assert "deliberately broken release" in result.text
    assert_zero_downtime(load, baseline_load, "the refused deploy")
    assert fab_host.snapshot() == before, "a release that fails its check leaves no trace"
    record("deploy refused by check", seconds=round(result.seconds, 1), **load_figures(load, baseline_load))


def test_a_release_failing_its_health_check_after_the_switch_is_rolled_back(fab_host: FabHost, source: SourceRepo,
                                                                             tmp_path: Path, baseline_load: dict) -> None:
    unready = source.variant(tmp_path / "unready", "unready")
    before = fab_host.snapshot()
    with fab_host.load() as load:
        result = fab_host.fab("deploy", "--app", str(unready.app), "--health-timeout", "10")
    assert_refused(result, r"failed after the switch: not ready within 10 s")
    assert f"switched back to {before['current']}, which is healthy" in result.text
    assert_zero_downtime(load, baseline_load, "the deploy that was switched back")
    assert fab_host.snapshot() == before, "switched back, and the failed release removed"
    assert fab_host.score_via_nginx()["status"] == 200
    record("deploy rolled back after the switch", seconds=round(result.seconds, 1), **load_figures(load, baseline_load))


# --------------------------------------------------------------------------- models


def test_deploying_the_tox_block_model_is_a_release_and_rollback_restores_the_old_model(
    fab_host: FabHost, source: SourceRepo, baseline_load: dict
) -> None:
    before = fab_host.snapshot()
    with fab_host.load() as load:
        result = fab_host.fab("deploy-model", "--app", str(source.app), "--model", str(H5), "--tokenizer", str(TOKENIZER))
    assert_ok(result)
    assert_zero_downtime(load, baseline_load, "the model deploy")
    after = fab_host.snapshot()
    assert after["current"] != before["current"]
    assert after["model"].startswith("/srv/toxic-service/shared/models/"), after["model"]
    assert Path(after["model"]).name in after["models"]
    metadata = fab_host.exec("cat", f"{after['model']}/metadata.json")
    assert "lstm_model_0.1.2.h5" in metadata, "the model's source is recorded in its metadata"
    scored = fab_host.score_via_nginx()
    assert scored["status"] == 200 and len(scored["body"]["prediction"]) == 6
    record("model deploy (tox-block .h5, converted on the controller)", seconds=round(result.seconds, 1),
           **load_figures(load, baseline_load))

    with fab_host.load() as load:
        back = fab_host.fab("rollback")
    assert_ok(back)
    assert_zero_downtime(load, baseline_load, "the rollback of the model deploy")
    restored = fab_host.snapshot()
    assert restored["current"] == before["current"] and restored["model"] == before["model"], "rollback restores the model too"


def test_a_model_built_for_another_vocabulary_is_refused_before_anything_changes(fab_host: FabHost, source: SourceRepo) -> None:
    before = fab_host.snapshot()
    result = fab_host.fab("deploy-model", "--app", str(source.app), "--model", str(H5), "--vocab", str(OTHER_VOCAB))
    assert_refused(result, r"refusing the model: it was built with vocabulary sha256:\S+ \(vocab\.sqlite\) but the host serves")
    assert fab_host.snapshot() == before
