"""Ctrl-C in the middle of a real export, and two exports of one artifact at once (real processes, real signals)."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
from pathlib import Path

from cli_helpers import cli_argv, error_lines, run_cli
from export_helpers import copy_run

from cifar_edge.runtime.common.command import ExitCode

PREVIOUS = b"the previous artifact"


def _start_export(run_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli_argv("cifar-export", [run_dir, "--quiet"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until ``path`` exists: the export has loaded the run, checked its destination and taken its lock."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_ctrl_c_mid_export_says_so_exits_130_and_keeps_the_old_artifact(tiny_run_dir: Path, tmp_path: Path) -> None:
    run_dir = copy_run(tiny_run_dir, tmp_path / "run")
    (run_dir / "model.onnx").write_bytes(PREVIOUS)
    export = _start_export(run_dir)
    _wait_for(run_dir / "model.onnx.lock", export)
    time.sleep(1.0)  # inside the work: reference outputs, tracing, the gate
    export.send_signal(signal.SIGINT)
    _, stderr = export.communicate(timeout=120)
    assert export.returncode == ExitCode.INTERRUPTED == 130, stderr
    assert stderr.splitlines() == ["cifar-export: interrupted; nothing was written under a final name"]
    assert (run_dir / "model.onnx").read_bytes() == PREVIOUS
    # No temporary file, no lock, no report left behind.
    assert sorted(path.name for path in run_dir.iterdir()) == ["model.onnx", "model.safetensors", "run.json"]


def test_two_real_exports_at_once_leave_a_consistent_pair(tiny_run_dir: Path, tmp_path: Path) -> None:
    run_dir = copy_run(tiny_run_dir, tmp_path / "run")
    first = _start_export(run_dir)
    _wait_for(run_dir / "model.onnx.lock", first)
    second = run_cli("cifar-export", run_dir, "--quiet")
    _, first_stderr = first.communicate(timeout=300)
    assert first.returncode == 0, first_stderr
    # The second one fails at once, in one line, and never touches the pair the first one writes.
    assert second.returncode == ExitCode.WRITE_FAILED, second.stderr
    assert error_lines(second.stderr, "cifar-export") == [
        f"cifar-export: error: cannot write {run_dir / 'model.onnx'}: another process is writing it "
        f"(it holds {run_dir / 'model.onnx.lock'}); try again later"
    ]
    report = json.loads((run_dir / "model.onnx.parity.json").read_text())
    assert report["sha256"] == hashlib.sha256((run_dir / "model.onnx").read_bytes()).hexdigest()
    assert not (run_dir / "model.onnx.lock").exists()
