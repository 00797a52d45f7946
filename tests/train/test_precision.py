"""Training arithmetic (--precision): bf16 autocast where the hardware has it, float32 evaluation always."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cifar_edge.train import TrainConfig, fit
from cifar_edge.train.data.load import Splits
from cifar_edge.train.environment import native_bf16, resolve_precision


def test_explicit_precisions_win_and_auto_follows_the_hardware() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == torch.float32
    assert resolve_precision("bf16", cpu) == torch.bfloat16
    assert resolve_precision("auto", cpu) == (torch.bfloat16 if native_bf16(cpu) else torch.float32)


def test_unknown_precision_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match="--precision must be one of auto, bf16, fp32, got 'fp16'"):
        TrainConfig(precision="fp16").validate()


def test_bf16_trains_differently_from_fp32_and_both_are_recorded(
    tiny_splits: Splits, airnet_config: TrainConfig, tmp_path: Path
) -> None:
    runs = {
        precision: fit(replace(airnet_config, precision=precision, run_dir=str(tmp_path / precision)), tiny_splits)
        for precision in ("bf16", "fp32")
    }
    states = {
        precision: torch.load(result.checkpoint, weights_only=True)["model"] for precision, result in runs.items()
    }
    for precision, result in runs.items():
        record = json.loads(result.run_json.read_text())
        assert record["environment"]["precision"] == precision and record["config"]["precision"] == precision
        assert all(torch.isfinite(tensor).all() for tensor in states[precision].values())
        # Autocast leaves the weights (and so the checkpoint and the export) in float32.
        assert all(tensor.dtype != torch.bfloat16 for tensor in states[precision].values())
    # bf16 rounding changes the path the weights take: proof that the steps really ran under autocast.
    changed = [name for name in states["fp32"] if not torch.equal(states["fp32"][name], states["bf16"][name])]
    assert "groups.0.conv1.weight" in changed
