"""Start `toxic-service serve` (real gunicorn) on this machine, wait until it serves, and stop exactly that process.

The one server launcher: the integration and browser tests (through
tests/integration/gunicorn_server.py) and bench/service.py start their servers
here. Standard library only: bench/ needs no test dependency.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# The console script of the interpreter running us (the venv's); `python -m toxic_service` where there is none.
TOXIC_SERVICE = str(Path(sys.executable).with_name("toxic-service"))


def command() -> list[str]:
    return [TOXIC_SERVICE] if os.access(TOXIC_SERVICE, os.X_OK) else [sys.executable, "-m", "toxic_service"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (from /proc/*/stat: a child of any of its threads counts)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4, after the parenthesised command (which may hold spaces), is the parent PID.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return sorted(kids)


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: with the PID, identifies one process even after its PID is reused."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def get(url: str, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of GET url+path; OSError / HTTPException when nothing answers."""
    host, _, port = url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port or 80), timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def worker_pids(self) -> list[int]:
        return children(self.pid)

    def environ(self) -> dict[str, str]:
        raw = Path(f"/proc/{self.pid}/environ").read_bytes().split(b"\0")
        return dict(item.decode().split("=", 1) for item in raw if b"=" in item)

    def log_lines(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Until GET /readyz answers 200; the seconds it took. RuntimeError (with the log's tail) if it exits or times out."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"toxic-service serve exited with {self.process.returncode}:\n{self._log_tail()}")
            try:
                if get(self.url, "/readyz", timeout=min(60.0, timeout))[0] == 200:
                    return time.monotonic() - started
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"toxic-service serve not ready after {timeout:.0f} s:\n{self._log_tail()}")

    def wait_workers_loaded(self, workers: int, timeout: float = 60.0) -> None:
        """Until `workers` live workers have logged that their model and vocabulary are loaded (needs info logging)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            loaded = {
                line.get("pid")
                for line in self.log_lines()
                if line.get("event") == "scorer_build" and line.get("outcome") == "ok"
            }
            if len(loaded & set(self.worker_pids())) >= workers:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{workers} workers not loaded after {timeout:.0f} s:\n{self._log_tail()}")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM to our master only (it stops its own workers), bounded wait, then SIGKILL to it and its workers."""
        workers = [(pid, _start_time(pid)) for pid in self.worker_pids()]
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for pid, started in workers:  # workers the master left behind; a reused PID is someone else's: left alone
            if started is not None and _start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return self.process.returncode


def base_env(bundle_dir: Path, sqlite_path: Path, data_dir: Path, **limits: int) -> dict[str, str]:
    """This environment without TOXIC_* settings, plus a bundle, an SQLite store, LiteRT and a small cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOXIC_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        TOXIC_DATA_DIR=str(data_dir),
        TOXIC_BUNDLE=str(bundle_dir),
        TOXIC_SQLITE_PATH=str(sqlite_path),
        TOXIC_VOCAB_BACKEND="sqlite",
        TOXIC_RUNTIME="litert",
        TOXIC_CACHE_ENTRIES="1000",
    )
    env.update({f"TOXIC_{k.upper()}": str(v) for k, v in limits.items()})
    return env


def start(
    env: dict[str, str],
    log_path: Path,
    workers: int = 2,
    bind: str | None = None,
    port: int | None = None,
    wait: bool = True,
    ready_timeout: float = 60.0,
    **popen: object,
) -> Server:
    """`toxic-service serve --bind ... --workers N` with stdout and stderr appended to log_path.

    wait=True: returns once /readyz answers and every worker has logged its scorer as loaded (stopping the
    server and raising if not, within ready_timeout each). wait=False: returns at once.
    """
    port = port or free_port()
    bind = bind or f"127.0.0.1:{port}"
    log = open(log_path, "ab")  # noqa: SIM115 (the child holds it as long as it runs)
    argv = [*command(), "serve", "--bind", bind, "--workers", str(workers)]
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, **popen)
    log.close()
    server = Server(process, f"http://127.0.0.1:{port}", log_path, env)
    if wait:
        try:
            server.wait_ready(ready_timeout)
            server.wait_workers_loaded(workers, ready_timeout)
        except Exception:
            server.stop()
            raise
    return server


def copy_store(src: Path, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / "vocab.sqlite"
    shutil.copy(src, dest)
    return dest
