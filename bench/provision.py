"""bench/provision: how long site.yml takes on a fresh host and again, and what the stack weighs in 1 GB.

One run, on the benchmark's own instance of the local test host (container
`toxic-bench`, the same Debian 12 systemd image and run flags as `make up`,
`--memory=1g`, published on other ports so it runs beside everyone else's):

1. `tools/local_host.py down` then `up`: a fresh container;
2. `ansible-playbook -i inventory/local site.yml`, timed: the fresh converge;
3. the same command again (twice in the full profile), timed, PLAY RECAP parsed:
   the idempotent re-run (target: <= 60 s with changed=0);
4. memory with the service idle, then under a bounded load made INSIDE the
   container (nginx exempts loopback from its per-client rate limit; traffic
   through the published port would come from the Docker gateway and be
   limited): per process RSS and PSS from /proc/<pid>/smaps_rollup for nginx
   master + workers and the gunicorn master + each worker, their sums, and the
   container's memory cgroup as the host sees it.

The container is removed at the end, whatever happened.

Memory: the sum of RSS counts a shared page once per process mapping it (the
workers share the interpreter, libraries and pages inherited from the master),
so it overstates the stack; PSS divides each shared page among its sharers and
sums to the real footprint. The target is judged on the RSS sum, as stated;
PSS is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import REPO, Section, Target, median, table
from tools.local_host import Instance, LocalHostError

NAME = "provision"
COMMAND = ".venv/bin/python -m bench provision"

# Targets from issue 3.
RERUN_TARGET_S = 60.0
STACK_RSS_TARGET_MB = 250
EXPECTED_WORKERS = 2

# The benchmark's own test host: name and ports no other suite uses.
CONTAINER = "toxic-bench"
HTTP_PORT, HTTPS_PORT, SSH_PORT = 38080, 38443, 32222

CACHE = REPO / ".cache"
LOGS = CACHE / "bench"
SAMPLE_SEED = 20_240_217  # fixed: the same comments every run
SAMPLE_EVERY_S = 2.0


@dataclass(frozen=True)
class Profile:
    reruns: int  # idempotent re-runs after the fresh converge
    load_seconds: float
    load_threads: int
    load_max_requests: int  # bound by count as well as by time
    comments: int


FULL = Profile(reruns=2, load_seconds=30.0, load_threads=4, load_max_requests=30_000, comments=300)
QUICK = Profile(reruns=1, load_seconds=10.0, load_threads=4, load_max_requests=10_000, comments=100)

CONVERGE_TIMEOUT_S = 1800.0  # a fresh converge installs packages from the Debian mirror
RERUN_TIMEOUT_S = 900.0


# --- preconditions ------------------------------------------------------------------------------------------


def check_inputs() -> Path:
    """The controller-side inputs site.yml reads from .cache (inventory/local); the comments file for the load."""
    wanted = {
        "wheelhouse": CACHE / "wheelhouse",
        "model bundle": CACHE / "toxic-service" / "default" / "model" / "metadata.json",
        "vocabulary": CACHE / "toxic-service" / "default" / "vocab.sqlite",
        "insults test comments": CACHE / "assets" / "src" / "insults_test.json",
    }
    missing = [f"{what} ({path})" for what, path in wanted.items() if not path.exists()]
    if not missing and not any(wanted["wheelhouse"].glob("*.whl")):
        missing.append(f"wheels in {wanted['wheelhouse']}")
    if missing:
        raise SystemExit("bench provision needs `make assets wheelhouse` first; missing: " + "; ".join(missing))
    return wanted["insults test comments"]


def load_comments(path: Path, count: int) -> list[str]:
    texts = [text for text in json.loads(path.read_text(encoding="utf-8"))["texts"] if text.split()]
    return random.Random(SAMPLE_SEED).sample(texts, min(count, len(texts)))


# --- the test host ------------------------------------------------------------------------------------------

INSTANCE = Instance(CONTAINER, HTTP_PORT, HTTPS_PORT, SSH_PORT)


def local_host(command: str) -> float:
    """`up` or `down` of the benchmark's instance (tools/local_host.py's Instance); seconds it took."""
    started = time.monotonic()
    try:
        {"up": INSTANCE.up, "down": INSTANCE.down}[command]()
    except (LocalHostError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"local_host {command} of {CONTAINER} failed: {exc}") from None
    return time.monotonic() - started


def docker_exec(*cmd: str, user: str | None = None, stdin: str | None = None, timeout: float = 60) -> str:
    args = ["docker", "exec", "-i"] + (["--user", user] if user else []) + [CONTAINER, *cmd]
    proc = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)[:80]}` in {CONTAINER} exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return proc.stdout


def other_containers() -> list[str]:
    out = subprocess.run(["docker", "ps", "--format", "{{.Names}}"], capture_output=True, text=True, timeout=30, check=False)
    return sorted(name for name in out.stdout.split() if name != CONTAINER)


# --- ansible ------------------------------------------------------------------------------------------------

RECAP_LINE = re.compile(r"^(\S+)\s*:\s*((?:\w+=\d+\s*)+)$")
PROFILE_LINE = re.compile(r"^(.+?)\s-{3,}\s+(\d+(?:\.\d+)?)s\s*$")


@dataclass(frozen=True)
class Converge:
    label: str
    seconds: float
    recap: dict[str, int]  # summed over hosts: ok, changed, failed, unreachable, skipped, ...
    slowest: tuple[tuple[str, float], ...]  # from ansible.posix.profile_tasks
    changed_tasks: tuple[str, ...]
    log: Path


def parse_recap(output: str) -> dict[str, int]:
    """PLAY RECAP counters summed over hosts; empty when no recap was printed."""
    totals: dict[str, int] = {}
    lines = output.splitlines()
    try:
        start = max(i for i, line in enumerate(lines) if line.startswith("PLAY RECAP"))
    except ValueError:
        return totals
    for line in lines[start + 1 :]:
        match = RECAP_LINE.match(line.strip())
        if not match:
            if line.strip():
                break
            continue
        for pair in match.group(2).split():
            key, _, value = pair.partition("=")
            totals[key] = totals.get(key, 0) + int(value)
    return totals


def parse_profile(output: str, limit: int = 6) -> tuple[tuple[str, float], ...]:
    """The profile_tasks summary after the recap: (task, seconds), slowest first."""
    rows = []
    recap_at = output.rfind("PLAY RECAP")
    for line in output[recap_at:].splitlines():
        match = PROFILE_LINE.match(line.strip())
        if match:
            rows.append((match.group(1).strip(), float(match.group(2))))
    return tuple(sorted(rows, key=lambda row: -row[1])[:limit])


def parse_changed(output: str) -> tuple[str, ...]:
    """Names of tasks that reported `changed:` (a re-run should have none)."""
    names, current = [], ""
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            current = line[line.index("[") + 1 : line.rindex("]")] if "]" in line else line
        elif line.startswith("changed:") and current and current not in names:
            names.append(current)
    return tuple(names)


def ansible_env() -> dict[str, str]:
    """What the Makefile exports, plus the instance's SSH port and a per-task timing summary."""
    env = dict(os.environ)
    env.update(
        {
            "PATH": f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}",
            "ANSIBLE_HOME": str(CACHE / "ansible" / "home"),
            "ANSIBLE_LOCAL_TEMP": str(CACHE / "ansible" / "tmp"),
            "TOXIC_ASSETS_CACHE": str(CACHE),
            "XDG_CACHE_HOME": str(CACHE),
            "TOXIC_LOCAL_SSH_PORT": str(SSH_PORT),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            # Adds a per-task timing list after the recap; it reads the clock only, so it costs nothing measurable.
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
            "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "12",
        }
    )
    return env


def converge(label: str, timeout: float) -> Converge:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"provision-{label}.log"
    cmd = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", "inventory/local", "site.yml"]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        log.write_text(out)
        raise RuntimeError(f"{label}: ansible-playbook did not finish within {timeout:.0f} s; log: {log}") from exc
    seconds = time.monotonic() - started
    output = proc.stdout + ("\n--- stderr ---\n" + proc.stderr if proc.stderr.strip() else "")
    log.write_text(output)
    recap = parse_recap(proc.stdout)
    if proc.returncode != 0 or not recap or recap.get("failed", 0) or recap.get("unreachable", 0):
        tail = "\n".join(output.splitlines()[-25:])
        raise RuntimeError(f"{label}: ansible-playbook exited {proc.returncode} (recap {recap}); log: {log}\n{tail}")
    return Converge(label, seconds, recap, parse_profile(proc.stdout), parse_changed(proc.stdout), log)


# --- memory, read inside the container ----------------------------------------------------------------------

# Runs as root inside the container (stdin of `docker exec -i ... python3 -`). smaps_rollup of another user's
# process needs CAP_SYS_PTRACE, which the container does not have, so each foreign process is read by a child
# that has become its owner (a process may always read its own user's dumpable processes).
MEMORY_PROBE = r"""
import json, os, subprocess

FIELDS = ("Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty", "Anonymous")

def rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as stream:
        for line in stream:
            key, _, value = line.partition(":")
            if key in FIELDS:
                out[key] = int(value.split()[0])
    return out

def as_owner(pid):
    st = os.stat(f"/proc/{pid}")
    if st.st_uid == 0:
        return rollup(pid)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(st.st_gid)
            os.setuid(st.st_uid)
            data = json.dumps(rollup(pid))
        except Exception as exc:
            data = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
        os.write(write_end, data.encode())
        os._exit(0)
    os.close(write_end)
    data = b""
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        data += chunk
    os.close(read_end)
    os.waitpid(child, 0)
    return json.loads(data or b'{"error": "no answer"}')

def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as stream:
        for line in stream:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields

main = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", "toxic-service"],
                      capture_output=True, text=True, timeout=10).stdout.strip()
main = int(main or 0)
me = os.getpid()
table = {}
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    pid = int(entry)
    try:
        fields = status(pid)
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            argv = stream.read().split(b"\0")
    except OSError:
        continue
    if "VmRSS" not in fields:
        continue  # kernel threads
    table[pid] = (int(fields["PPid"]), fields["Name"], int(fields["VmRSS"].split()[0]), argv[:2])
nginx_master = [pid for pid, (ppid, name, _, _) in table.items() if name == "nginx" and ppid == 1]
stack, others, bench_kb = [], [], 0
for pid, (ppid, name, rss_kb, argv) in sorted(table.items()):
    role = None
    if name == "nginx":
        role = "nginx master" if ppid == 1 else "nginx worker"
    elif main and pid == main:
        role = "gunicorn master"
    elif main and ppid == main:
        role = "gunicorn worker"
    if role:
        entry = {"role": role, "pid": pid}
        try:
            entry.update(as_owner(pid))
        except OSError as exc:
            entry["error"] = str(exc)
        stack.append(entry)
    elif pid == me or (len(argv) > 1 and argv[0] == b"python3" and argv[1].endswith(b"/loadgen.py")):
        bench_kb += rss_kb  # this probe and the benchmark's load generator
    else:
        others.append((name, rss_kb))
others.sort(key=lambda item: -item[1])
print(json.dumps({"main_pid": main, "stack": stack, "other_rss_kb": sum(kb for _, kb in others),
                  "other_processes": len(others), "other_largest": others[:5], "bench_rss_kb": bench_kb}))
"""


def container_cgroup() -> Path | None:
    """The container's memory cgroup on this machine (cgroup v1, what `docker info` reports here)."""
    cid = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", CONTAINER], capture_output=True, text=True,
                         timeout=30, check=False).stdout.strip()  # fmt: skip
    path = Path("/sys/fs/cgroup/memory/docker") / cid
    return path if cid and (path / "memory.usage_in_bytes").is_file() else None


def cgroup_memory(path: Path | None) -> dict[str, int]:
    """usage, usage minus inactive file pages (what `docker stats` shows on v1), usage minus all page cache; kB."""
    if path is None:
        return {}
    usage = int((path / "memory.usage_in_bytes").read_text())
    stat = dict(line.split() for line in (path / "memory.stat").read_text().splitlines() if line.strip())
    kb = 1024
    return {
        "usage": usage // kb,
        "docker_stats": (usage - int(stat.get("total_inactive_file", 0))) // kb,
        "minus_cache": (usage - int(stat.get("total_cache", 0))) // kb,
        "anon": int(stat.get("total_rss", 0)) // kb,
        "cache": int(stat.get("total_cache", 0)) // kb,
    }


@dataclass(frozen=True)
class Snapshot:
    at: float  # seconds since the phase began
    stack: list[dict[str, Any]]
    other_rss_kb: int
    other_processes: int
    other_largest: list[tuple[str, int]]
    bench_rss_kb: int
    cgroup: dict[str, int]

    def total(self, key: str, roles: tuple[str, ...] = ()) -> int:
        return sum(p.get(key, 0) for p in self.stack if not roles or p["role"] in roles)

    def count(self, role: str) -> int:
        return sum(p["role"] == role for p in self.stack)


def snapshot(cgroup: Path | None, began: float) -> Snapshot:
    data = json.loads(docker_exec("python3", "-", stdin=MEMORY_PROBE, timeout=30))
    errors = [p for p in data["stack"] if "error" in p]
    if errors:
        raise RuntimeError(f"could not read smaps_rollup in {CONTAINER}: {errors}")
    return Snapshot(time.monotonic() - began, data["stack"], data["other_rss_kb"], data["other_processes"],
                    [tuple(item) for item in data["other_largest"]], data["bench_rss_kb"], cgroup_memory(cgroup))  # fmt: skip


# --- load, made inside the container ------------------------------------------------------------------------

# The load is tools/loadgen.py's closed loop, copied into the container: each thread sends its next request when
# the last one answered (so the figure is what the stack sustains), over real, varied comments given on stdin.
LOADGEN = REPO / "tools" / "loadgen.py"
LOADGEN_IN_CONTAINER = "/root/toxic-bench"


def run_load(comments: list[str], profile: Profile, cgroup: Path | None) -> tuple[dict[str, Any], list[Snapshot]]:
    """The load script in the container, memory sampled every 2 s from outside it; (load result, samples)."""
    if not LOADGEN.is_file():
        raise SystemExit(f"bench provision uses the load generator {LOADGEN.relative_to(REPO)}, which is missing")
    docker_exec("mkdir", "-p", LOADGEN_IN_CONTAINER)
    copied = subprocess.run(["docker", "cp", str(LOADGEN), f"{CONTAINER}:{LOADGEN_IN_CONTAINER}/loadgen.py"],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    if copied.returncode != 0:
        raise RuntimeError(f"could not copy {LOADGEN.name} into {CONTAINER}: {copied.stderr.strip()}")
    began = time.monotonic()
    deadline = began + profile.load_seconds + 90  # the generator's own bound is its duration + the 30 s timeout
    cmd = ["docker", "exec", "-i", CONTAINER, "python3", f"{LOADGEN_IN_CONTAINER}/loadgen.py", "--connection", "close",
           "--timeout", "30", "--comments-file", "-", "closed", "--threads", str(profile.load_threads),
           "--duration", str(profile.load_seconds), "--max-requests", str(profile.load_max_requests)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    comments_json = json.dumps(comments)  # the generator's stdin (--comments-file -)
    collected: dict[str, str] = {}

    def talk() -> None:
        out, err = proc.communicate(comments_json)
        collected.update(stdout=out, stderr=err)

    talker = threading.Thread(target=talk, daemon=True)
    talker.start()
    samples: list[Snapshot] = []
    try:
        next_at = began + 1.0  # the first sample once the load has started
        for _ in range(int((deadline - began) / SAMPLE_EVERY_S) + 2):
            if not talker.is_alive() or time.monotonic() > deadline:
                break
            pause = next_at - time.monotonic()
            if pause > 0:
                talker.join(timeout=pause)
                if not talker.is_alive():
                    break
            samples.append(snapshot(cgroup, began))
            next_at += SAMPLE_EVERY_S
        talker.join(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()  # our own `docker exec` client, by its Popen handle
            proc.wait(timeout=30)
    if talker.is_alive() or proc.returncode != 0 or not collected.get("stdout", "").strip():
        raise RuntimeError(f"the load generator failed (exit {proc.returncode}): {collected.get('stderr', '')[-800:]}")
    return json.loads(collected["stdout"].strip().splitlines()[-1]), samples


# --- the section --------------------------------------------------------------------------------------------


def _mb(kb: float) -> str:
    return f"{kb / 1024:.1f} MB"


def _seconds(value: float) -> str:
    return f"{value:.1f} s"


STACK_ROLES = ("nginx master", "nginx worker", "gunicorn master", "gunicorn worker")


def memory_table(columns: list[tuple[str, Snapshot]]) -> str:
    """Rows: each process of the stack, the sums, the rest of the container, the cgroup; a column per snapshot."""
    header = ["process"] + [f"{name}: RSS / PSS" for name, _ in columns]
    rows = []
    first = columns[0][1]
    for proc in first.stack:
        label = f"{proc['role']} (pid {proc['pid']})"
        cells = []
        for _, snap in columns:
            match = next((p for p in snap.stack if p["pid"] == proc["pid"]), None)
            cells.append(f"{_mb(match['Rss'])} / {_mb(match['Pss'])}" if match else "gone")
        rows.append([label, *cells])
    for role in STACK_ROLES:
        rows.append([f"sum: {role}s" if "worker" in role else f"sum: {role}",
                     *[f"{_mb(s.total('Rss', (role,)))} / {_mb(s.total('Pss', (role,)))}" for _, s in columns]])  # fmt: skip
    rows.append(["**whole stack (nginx + gunicorn)**",
                 *[f"**{_mb(s.total('Rss'))}** / **{_mb(s.total('Pss'))}**" for _, s in columns]])  # fmt: skip
    rows.append(["rest of the container: RSS sum (systemd, journald, sshd, ...)",
                 *[f"{_mb(s.other_rss_kb)} ({s.other_processes} processes)" for _, s in columns]])  # fmt: skip
    rows.append(["the benchmark's own probe / load generator: RSS", *[_mb(s.bench_rss_kb) for _, s in columns]])
    if first.cgroup:
        rows.append(["container cgroup: usage - inactive file (= `docker stats`)",
                     *[_mb(s.cgroup["docker_stats"]) for _, s in columns]])  # fmt: skip
        rows.append(["container cgroup: usage - page cache (anon + kernel)", *[_mb(s.cgroup["minus_cache"]) for _, s in columns]])
        rows.append(["container cgroup: memory.usage_in_bytes (incl. page cache)", *[_mb(s.cgroup["usage"]) for _, s in columns]])
    return table(header, rows)


def run(args: argparse.Namespace) -> Section:
    profile = QUICK if getattr(args, "quick", False) else FULL
    comments_file = check_inputs()
    comments = load_comments(comments_file, profile.comments)
    load_before = os.getloadavg()
    neighbours = other_containers()

    started = time.monotonic()
    try:
        local_host("down")
        up_seconds = local_host("up")
        fresh = converge("fresh", CONVERGE_TIMEOUT_S)
        reruns = [converge(f"rerun-{i + 1}", RERUN_TIMEOUT_S) for i in range(profile.reruns)]

        exec_start = docker_exec("systemctl", "show", "-p", "ExecStart", "--value", "toxic-service").strip()
        workers_flag = re.search(r"--workers\s+(\d+)", exec_start)
        env_file = docker_exec("cat", "/etc/toxic-service/toxic.env")
        env_workers = re.search(r"^\s*(?:TOXIC_WORKERS|WEB_CONCURRENCY)\s*=\s*(\S+)", env_file, re.M)
        memory_max = docker_exec("systemctl", "show", "-p", "MemoryMax", "--value", "toxic-service").strip()
        cgroup = container_cgroup()

        time.sleep(5)  # let the last re-run's SSH sessions and facts gathering leave
        idle = snapshot(cgroup, time.monotonic())
        load, samples = run_load(comments, profile, cgroup)
        final = snapshot(cgroup, time.monotonic())
    finally:
        load_after = os.getloadavg()
        try:
            local_host("down")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"bench provision: could not remove {CONTAINER}: {exc}", file=sys.stderr)
    elapsed = time.monotonic() - started

    workers = idle.count("gunicorn worker")
    if not samples:
        raise RuntimeError("no memory sample was taken under load")
    peak = max(samples, key=lambda s: s.total("Rss"))
    peak_pss = max(s.total("Pss") for s in samples)
    peak_cgroup = max((s.cgroup.get("docker_stats", 0) for s in samples), default=0)
    rerun_seconds = [r.seconds for r in reruns]
    rerun_median = median(rerun_seconds)
    rerun_changed = [r.recap.get("changed", 0) for r in reruns]
    worst_rss = max(idle.total("Rss"), peak.total("Rss"), final.total("Rss"))
    worst_pss = max(idle.total("Pss"), peak_pss, final.total("Pss"))
    rss_passed = worst_rss <= STACK_RSS_TARGET_MB * 1024
    pss_passed = worst_pss <= STACK_RSS_TARGET_MB * 1024
    workers_ok = workers == EXPECTED_WORKERS and workers_flag is not None and int(workers_flag.group(1)) == EXPECTED_WORKERS

    targets = (
        Target(
            f"idempotent re-run <= {RERUN_TARGET_S:.0f} s with changed=0",
            f"{', '.join(_seconds(s) for s in rerun_seconds)} (median {_seconds(rerun_median)}); "
            f"changed={', '.join(map(str, rerun_changed))}",
            rerun_median <= RERUN_TARGET_S and not any(rerun_changed),
        ),
        Target(
            f"whole-stack RSS <= {STACK_RSS_TARGET_MB} MB, {EXPECTED_WORKERS} workers, SQLite, 1 GB container",
            f"sum of RSS: idle {_mb(idle.total('Rss'))}, peak under load {_mb(peak.total('Rss'))}, after load "
            f"{_mb(final.total('Rss'))} ({workers} workers); PSS peak {_mb(peak_pss)}"
            + ("" if rss_passed or not pss_passed else " (passes on PSS only)"),
            rss_passed and workers_ok,
        ),
    )

    recap_rows = []
    for run_ in (fresh, *reruns):
        recap_rows.append((run_.label, f"**{_seconds(run_.seconds)}**", run_.recap.get("ok", 0), run_.recap.get("changed", 0),
                           run_.recap.get("skipped", 0), run_.recap.get("failed", 0), run_.log.relative_to(REPO)))  # fmt: skip
    recap_table = table(["run", "wall time", "ok", "changed", "skipped", "failed", "log"], recap_rows)

    def slowest(run_: Converge) -> str:
        return "; ".join(f"{name} {sec:.1f} s" for name, sec in run_.slowest) or "(no profile_tasks summary)"

    changed_text = (
        "No task reported `changed` in any re-run."
        if not any(r.changed_tasks for r in reruns)
        else "Tasks that reported `changed` in a re-run: "
        + "; ".join(f"{r.label}: {', '.join(r.changed_tasks)}" for r in reruns if r.changed_tasks)
    )
    series = table(
        ["t (s)", "stack RSS", "stack PSS", "gunicorn workers RSS", "container (`docker stats`)"],
        [(f"{s.at:.0f}", _mb(s.total("Rss")), _mb(s.total("Pss")), _mb(s.total("Rss", ("gunicorn worker",))),
          _mb(s.cgroup.get("docker_stats", 0)) if s.cgroup else "n/a") for s in samples],
    )  # fmt: skip
    shared_note = (
        f"other containers running at the start: {', '.join(neighbours)}"
        if neighbours
        else "no other container was running at the start"
    )
    env_workers_text = f"`{env_workers.group(0).strip()}`" if env_workers else "no workers setting (the unit's flag decides)"

    memory_max_text = f"{int(memory_max) / 2**20:.0f} MiB" if memory_max.isdigit() else memory_max
    shared_kb = peak.total("Rss") - peak.total("Pss")
    verdict = (
        f"**Against the {STACK_RSS_TARGET_MB} MB target**: the RSS sum is {_mb(worst_rss)} at its highest, so the target "
        + ("passes on RSS" if rss_passed else "**fails on RSS**")
        + f"; the PSS sum, the stack's real footprint, is {_mb(worst_pss)} at its highest"
        + (" (within the target)" if pss_passed else " (over the target too)")
        + f". The difference, {_mb(shared_kb)} at the peak, is shared pages the RSS sum counts more than once (each "
        "worker maps the interpreter and libraries the master loaded before forking)."
    )
    if samples[0].cgroup:
        highest = max(s.cgroup["minus_cache"] for s in samples)
        verdict += (
            f" The container's anonymous plus kernel memory (usage - page cache) was {_mb(highest)} at its highest under load."
        )
    else:
        verdict += " The container's memory cgroup was not found (not cgroup v1 under /sys/fs/cgroup/memory/docker)."
    body = f"""
One run on the benchmark's own test host, `{CONTAINER}` (`tools/local_host.py --name {CONTAINER}`: the Debian 12
systemd image of `make up`, `--memory=1g`, {len(os.sched_getaffinity(0))} CPUs visible), created fresh for this run
({_seconds(up_seconds)} from `up` to sshd answering, not counted below) and removed afterwards. Provisioned with
`TOXIC_LOCAL_SSH_PORT={SSH_PORT} ansible-playbook -i inventory/local site.yml` from the working tree, the way
`make demo` does (sqlite vocabulary, system Python, LiteRT runtime). The fresh converge installs nginx and the
Python packages from the Debian mirror this machine's apt sources name, so its time includes those downloads; the
wheelhouse and the model bundle are copied from `.cache/`. Whole benchmark: {elapsed:.0f} s.

**The machine was shared**: {shared_note}. 1-minute load average {load_before[0]:.2f} before the run and
{load_after[0]:.2f} after it, on {os.cpu_count()} CPUs; times here are upper bounds of what a quiet 2-CPU host takes.

### Converge times

{recap_table}

Slowest tasks of the fresh converge (`ansible.posix.profile_tasks`): {slowest(fresh)}.

Slowest tasks of the first re-run: {slowest(reruns[0])}.

{changed_text}

### Memory of the stack in the 1 GB container

Workers: the unit runs `{exec_start.split("argv[]=", 1)[-1].split(" ;", 1)[0].strip()}`; `/etc/toxic-service/toxic.env`
has {env_workers_text}; {workers} gunicorn workers were running (expected {EXPECTED_WORKERS}). The unit's MemoryMax
is {memory_max_text}.

Per process, from `/proc/<pid>/smaps_rollup` read inside the container (each process read as its own user: the
container has no CAP_SYS_PTRACE). RSS counts every page a process maps, so pages the workers share with the master
(the interpreter, the libraries, what was loaded before the fork) are counted once per process in the RSS sum; PSS
splits each shared page among the processes sharing it, so the PSS sum is the stack's real footprint. The container
figures are its memory cgroup (cgroup v1 on this machine) read from the host: `memory.usage_in_bytes`, minus
`total_inactive_file` (what `docker stats` shows on v1), and minus `total_cache`; they include everything in the
container (systemd, journald, sshd, and the benchmark's own probe and load generator).

Columns: **idle** = 5 s after the last re-run (the service has answered only the release activation's health
checks); **peak** = the sample with the largest stack RSS sum during the load (t = {peak.at:.0f} s);
**after load** = right after the load generator exited.

{memory_table([("idle", idle), ("peak under load", peak), ("after load", final)])}

{verdict}

Largest other processes in the container when idle (RSS): {", ".join(f"{name} {_mb(kb)}" for name, kb in idle.other_largest)}.

Load: {profile.load_threads} threads inside the container in a closed loop (each sends its next request when the last
one answered; `tools/loadgen.py closed`), each request on a new connection to nginx on `127.0.0.1:80` (loopback
being exempt from nginx's per-client rate limit; `POST /detect-toxic`, counted ok only for HTTP 200 with a score in
[0, 1] for each label the service's `/readyz` announces), one comment per request, cycling through
{len(comments)} real comments drawn at random (fixed seed) from the insults test file; bounded by
{profile.load_seconds:.0f} s and {profile.load_max_requests:,} requests.
Result: **{load["ok"]:,} answered in {load["seconds"]:.1f} s ({load["rps"]:.0f} requests/s), {load["errors"]}
errors**; latency p50
{load["p50_ms"]:.1f} ms, p99 {load["p99_ms"]:.1f} ms (the load generator shares the container's CPUs with the
service).{(" Error samples: " + "; ".join(map(str, load["error_samples"]))) if load["errors"] else ""} Peak of the
container's `docker stats` figure during the load: {_mb(peak_cgroup)}.

Samples every {SAMPLE_EVERY_S:.0f} s during the load:

{series}
"""
    notes = ("Figures come from one run on a shared, noisy machine: times vary with what else runs; memory does much less.",)
    return Section(
        name=NAME,
        title="Provisioning: converge times and the stack's memory in 1 GB",
        command=COMMAND + (" --quick" if profile is QUICK else ""),
        body=body,
        targets=targets,
        quick=profile is QUICK,
        notes=notes,
    )
