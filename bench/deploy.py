"""bench/deploy: how long `fab deploy` of a code-only change and `fab rollback` take, under load.

A container of its own (`toxic-fab-bench`, tools/local_host.py, ports 18180/
18543/12322) is provisioned with site.yml; a throw-away git repository holds a
copy of app/. Each run commits a real, harmless code change and times the whole
`fab deploy` command on the controller: reading the inventory, building the
wheel, uploading what changed, `toxic-release prepare` (the dependency env is
reused), `toxic-service check`, the switch, the graceful restart and the health
check through nginx. Rollbacks alternate between the previous release and the
newest one by name, timed the same way. A constant 40 requests/s of scoring
requests runs through nginx inside the container all along (tools/loadgen.py,
started once its first request has succeeded), and every failed request is
counted. The container is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench import Section, Target, median, table
from tools.fabhost import LOAD_RATE, FabHost, SourceRepo

NAME = "deploy"
COMMAND = ".venv/bin/python -m bench deploy"
DEPLOY_TARGET_S = 30.0
ROLLBACK_TARGET_S = 5.0
RATE = LOAD_RATE


def _load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def run(args: argparse.Namespace) -> Section:
    runs = 2 if args.quick else 5
    host = FabHost(name="toxic-fab-bench", http_port=18180, https_port=18543, ssh_port=12322)
    host.work.mkdir(parents=True, exist_ok=True)
    load_before = _load_average()
    deploys: list[dict] = []
    rollbacks: list[dict] = []
    host.down()
    try:
        host.up()
        provision = host.provision()
        with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
            source = SourceRepo.create(Path(tmp) / "source")
            # Warm-up, not timed: the first fab deploy fills the host's staging wheelhouse.
            source.code_change("warm-up")
            _check(host.fab("deploy", "--app", str(source.app)), "warm-up deploy")
            for i in range(runs):
                source.code_change(f"bench {i}")
                with host.load(rate=RATE) as load:
                    result = host.fab("deploy", "--app", str(source.app))
                _check(result, f"deploy {i}")
                deploys.append({"seconds": result.seconds, "load": load, "release": host.snapshot()["current"]})
            newest = deploys[-1]["release"]
            for i in range(runs):
                args_ = ("rollback",) if i % 2 == 0 else ("rollback", "--release", newest)
                with host.load(rate=RATE) as load:
                    result = host.fab(*args_)
                _check(result, " ".join(args_))
                rollbacks.append({"seconds": result.seconds, "load": load, "what": "previous" if i % 2 == 0 else "named"})
    finally:
        host.down()
    return _section(args, runs, provision, deploys, rollbacks, load_before)


def _check(result, what: str) -> None:
    if result.code != 0:
        raise RuntimeError(f"{what} failed (exit {result.code}):\n{result.text[-2000:]}")


def _section(args, runs: int, provision: float, deploys: list[dict], rollbacks: list[dict], load_before: str) -> Section:
    deploy_median = median([d["seconds"] for d in deploys])
    rollback_median = median([r["seconds"] for r in rollbacks])
    failed = sum(x["load"].get("errors", 1) for x in deploys + rollbacks)
    sent = sum(x["load"].get("sent", 0) for x in deploys + rollbacks)
    rows = [
        (f"deploy {i + 1}", f"{d['seconds']:.1f} s", d["load"].get("sent"), d["load"].get("errors"),
         f"{d['load'].get('max_ms')} ms")
        for i, d in enumerate(deploys)
    ] + [
        (f"rollback {i + 1} ({r['what']})", f"{r['seconds']:.1f} s", r["load"].get("sent"), r["load"].get("errors"),
         f"{r['load'].get('max_ms')} ms")
        for i, r in enumerate(rollbacks)
    ]
    body = f"""
{runs} code-only deploys and {runs} rollbacks, one after another, against a Debian 12 systemd container (1 GB,
`tools/local_host.py`), provisioned with `site.yml` ({provision:.0f} s). Times are the wall time of the whole `fab`
command on the controller, medians over the runs; see `bench/deploy.py` for what a run includes. During every run
{RATE:.0f} scoring requests/s went through nginx inside the container (`tools/loadgen.py`, open loop):
**{failed} of {sent} failed** in total. The longest request of a run is the one that waited in the listening
socket while gunicorn restarted (systemd holds the socket, so it queues instead of failing).

{table(["run", "time", "requests", "failed", "slowest request"], rows)}

1-minute load average before the benchmark: {load_before}, after: {_load_average()} (2 CPUs shared with other work:
expect the figures to move by a second or two between runs).
"""
    return Section(
        name=NAME,
        title="Deploy and rollback (fab, over SSH, under load)",
        command=COMMAND,
        body=body,
        quick=args.quick,
        targets=(
            Target(f"code-only `fab deploy` <= {DEPLOY_TARGET_S:.0f} s", f"median {deploy_median:.1f} s "
                   f"(max {max(d['seconds'] for d in deploys):.1f} s)", deploy_median <= DEPLOY_TARGET_S),
            Target(f"`fab rollback` <= {ROLLBACK_TARGET_S:.0f} s", f"median {rollback_median:.1f} s "
                   f"(max {max(r['seconds'] for r in rollbacks):.1f} s)", rollback_median <= ROLLBACK_TARGET_S),
            Target("0 failed requests during deploys and rollbacks", f"{failed} of {sent}", failed == 0),
        ),
    )
