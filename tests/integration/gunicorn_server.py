"""Starts `toxic-service serve` (real gunicorn) on loopback for a test, and stops exactly that process.

Imported by path from tests/integration and tests/browser.
"""

from __future__ import annotations

import contextlib
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

import requests

TOXIC_SERVICE = str(Path(sys.executable).with_name("toxic-service"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

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

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn not ready after {timeout} s:\n{self.log_path.read_text()[-3000:]}")

    def wait_workers_loaded(self, workers: int, timeout: float = 60.0) -> None:
        """Until `workers` live workers have logged that their model and vocabulary are loaded."""
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
        raise RuntimeError(f"{workers} workers not loaded after {timeout} s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM to our master only (it stops its own workers), bounded wait, then SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                workers = self.worker_pids()
                self.process.kill()
                self.process.wait(5)
                for pid in workers:  # orphaned workers of the master we started
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        return self.process.returncode


def base_env(bundle_dir: Path, sqlite_path: Path, data_dir: Path, **limits: int) -> dict[str, str]:
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
    **popen: object,
) -> Server:
    port = port or free_port()
    bind = bind or f"127.0.0.1:{port}"
    log = open(log_path, "ab")  # noqa: SIM115 (lives as long as the server)
    argv = [TOXIC_SERVICE, "serve", "--bind", bind, "--workers", str(workers)]
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, **popen)
    log.close()
    server = Server(process, f"http://127.0.0.1:{port}", log_path, env)
    if wait:
        try:
            server.wait_ready()
            server.wait_workers_loaded(workers)
        except Exception:
            server.stop()
            raise
    return server


def copy_store(src: Path, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / "vocab.sqlite"
    shutil.copy(src, dest)
    return dest
