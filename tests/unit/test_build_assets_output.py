"""make assets shows our CLI's own output, not TensorFlow's start-up log (which reads as errors on a good run)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("build_assets", REPO / "tools" / "build_assets.py")
build_assets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_assets)

TF_STARTUP = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    b"I0000 00:00:1796147916.595652   11238 cudart_stub.cc:31] Could not find cuda drivers on your machine\n"
    b"E0000 00:00:1796147922.279240   11238 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n"
)
OURS = b"reading the Keras tokenizer x.pkl\n\rwriting:  10%\rwriting: 100%\nE: a line of our own that looks short\n"


def test_tensorflow_startup_lines_are_held_back_and_ours_pass_as_they_come(capfdbinary):
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stderr.buffer.write(sys.stdin.buffer.read())"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    child.stdin.write(TF_STARTUP[:70] + TF_STARTUP[70:] + OURS)  # split mid-line: lines are judged whole
    child.stdin.close()
    held_back = build_assets._pass_stderr_without_tf_startup_log(child.stderr)
    assert child.wait() == 0
    assert b"".join(held_back) == TF_STARTUP
    assert capfdbinary.readouterr().err == OURS
