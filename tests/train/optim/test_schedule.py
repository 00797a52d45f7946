"""The learning-rate schedules: warmup + linear decay, constant, and the triangle."""

from __future__ import annotations

import itertools

import pytest

from cifar_edge.train.optim.schedule import LrSchedule


def test_warmup_then_linear_decay_to_zero() -> None:
    schedule = LrSchedule("warmup_linear", total_steps=10, warmup_steps=2)
    factors = [schedule(step) for step in range(10)]
    assert factors[:3] == [0.5, 1.0, 1.0]  # ramps up over the warmup, peaks right after it
    assert all(a > b for a, b in itertools.pairwise(factors[2:]))  # then strictly decreasing
    assert factors[-1] == pytest.approx(1 / 8) and schedule(10) == 0.0  # reaches 0 exactly at the end
    assert LrSchedule("constant", 10, 0)(7) == 1.0
    # Plain attributes only: LambdaLR checkpoints them (and a resume with more epochs edits total_steps).
    assert all(isinstance(value, (str, int, float)) for value in vars(schedule).values())


def test_triangle_rises_from_start_to_peak_then_falls_to_end() -> None:
    schedule = LrSchedule("triangle", total_steps=100, start_factor=0.2, peak_fraction=0.23, end_factor=0.07)
    factors = [schedule(step) for step in range(100)]
    assert factors[0] == pytest.approx(0.2)
    assert factors[23] == pytest.approx(1.0) and max(factors) == factors[23]  # the peak at 23% of the steps
    assert factors[99] == pytest.approx(0.07)  # the last optimizer step
    assert all(a < b for a, b in itertools.pairwise(factors[:24]))  # linear up ...
    assert all(a > b for a, b in itertools.pairwise(factors[23:]))  # ... and linear down
    assert factors[12] == pytest.approx(0.2 + 0.8 * 12 / 23)
    assert factors[61] == pytest.approx(1.0 - 0.93 * (61 - 23) / (99 - 23))


def test_triangle_without_a_ramp_decays_linearly_from_the_first_step() -> None:
    schedule = LrSchedule("triangle", total_steps=11, start_factor=0.2, peak_fraction=0.0, end_factor=0.0)
    factors = [schedule(step) for step in range(11)]
    assert factors == pytest.approx([1.0 - step / 10 for step in range(11)])  # start_factor plays no part
