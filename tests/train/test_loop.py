"""Pieces of the epoch loop: the learning-rate schedule, deferred NaN detection, the weight average."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from cifar_edge.train.loop import LrSchedule, NonFiniteLossError, Position, WeightAverage, check_finite


def test_warmup_then_linear_decay_to_zero() -> None:
    schedule = LrSchedule("warmup_linear", total_steps=10, warmup_steps=2)
    factors = [schedule(step) for step in range(10)]
    assert factors[:3] == [0.5, 1.0, 1.0]  # ramps up over the warmup, peaks right after it
    assert all(a > b for a, b in itertools.pairwise(factors[2:]))  # then strictly decreasing
    assert factors[-1] == pytest.approx(1 / 8) and schedule(10) == 0.0  # reaches 0 exactly at the end
    assert LrSchedule("constant", 10, 0)(7) == 1.0
    assert vars(schedule) == {"kind": "warmup_linear", "total_steps": 10, "warmup_steps": 2}  # checkpointable


def test_deferred_finite_check_names_the_first_bad_step() -> None:
    """On CUDA the loss is checked every few steps; the error must still name the step that went bad."""
    losses = torch.tensor([1.0, 0.9, float("inf"), float("nan"), 0.5])
    position = Position(epoch=2, step=5, global_step=25)  # 5 steps of epoch 3 done; global step 25
    with pytest.raises(NonFiniteLossError) as caught:
        check_finite(losses, 0, 5, position)
    error = caught.value
    assert (error.epoch, error.step, error.global_step) == (3, 3, 23)
    assert "loss became inf at step 23 (epoch 3, batch 3)" in str(error)
    assert check_finite(losses, 0, 2, position) == 2


def test_weight_average_tracks_the_weights() -> None:
    model = nn.Linear(2, 1)
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        start = model.weight.clone()
        model.weight.add_(2.0)
    average.update(model, global_step=100)  # decay min(0.5, 101/110) = 0.5: halfway to the new weights
    assert torch.allclose(average.model.weight, start + 1.0)
    assert not average.model.weight.requires_grad
