"""bench/optimizer_step.py: the operation counts that stand in for a GPU's kernel launches, measured for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench" / "optimizer_step.py"


def test_batched_muon_step_dispatches_far_fewer_operations_than_the_loop() -> None:
    command = [sys.executable, str(BENCH), "--recipe", "default", "--device", "cpu", "--steps", "2", "--rounds", "1"]
    completed = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    operations = report["operations_per_step"]
    # Six filter banks in four shapes: the loop pays per parameter and per Newton-Schulz term, the batched step
    # per stage and per shape.
    assert operations["muon, per-parameter loop"] > 3 * operations["muon, batched (foreach)"]
    assert operations["torch SGD, foreach"] < operations["torch SGD, loop"]
    assert report["operations_ratio_loop_over_batched"] > 3
    assert all(milliseconds > 0 for milliseconds in report["ms_per_step"].values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_device_the_machine_lacks_is_a_one_line_error() -> None:
    completed = subprocess.run([sys.executable, str(BENCH), "--device", "cuda"], capture_output=True, text=True)
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: --device cuda: CUDA is not available on this machine; use --device cpu"
    ]
