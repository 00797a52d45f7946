"""Budgeted runs end to end on the tiny data, timed by a fake clock: the plan in run.json, resume, re-plan."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cifar_edge.train import TrainConfig, fit
from cifar_edge.train.budget.plan import BudgetTooSmall
from cifar_edge.train.data.load import Splits
from cifar_edge.train.fit import TrainingInterrupted
from cifar_edge.train.recipes import DEFAULT
from cifar_edge.train.state import StepEvent

TICK = 0.01  # fake seconds per clock reading: the loop reads it once per step, so one step costs one tick


class FakeClock:
    """Advances ``tick`` seconds at every reading: speeds measured with it are exact and repeatable."""

    def __init__(self, tick: float = TICK) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


@pytest.fixture
def budget_config(airnet_config: TrainConfig) -> TrainConfig:
    """The default recipe (tiny AirNet) on a 0.3 s budget: batch 18 splits the 54 images into 3 full steps, so a
    fake tick per step is exactly the probe's speed; its design knobs (3/3/3 of 18 epochs) are the recipe's."""
    return replace(airnet_config, epochs=None, budget_s=0.3, batch_size=18, recipe_overrides={})


def _record(result) -> dict:
    return json.loads(result.run_json.read_text())


def test_run_json_records_the_plan_and_the_run_follows_it(tiny_splits: Splits, budget_config: TrainConfig) -> None:
    result = fit(budget_config, tiny_splits, clock=FakeClock())
    record = _record(result)
    plan, recipe = record["plan"], record["recipe"]
    assert plan["budget_s"] == 0.3 and plan["source"] == "--budget" and plan["design_epochs"] == 18
    assert plan["speeds"] == [
        {"batch_size": 18, "images_per_s": 18 / TICK, "steps": plan["total_steps"], "images": 54 * plan["epochs"]}
    ]
    assert plan["images_per_s"] == pytest.approx(18 / TICK) and plan["warm_up_s"] > 0 and plan["replanned"] is None
    assert plan["predicted_s"]["total_s"] <= 0.3 and plan["steps_per_epoch"] == 3
    assert plan["workload"]["val_images"] == 18 and plan["workload"]["final_passes"] == 9  # every view: 1 + 2 + 6
    # The recipe the run trained is the plan's: its length, and the knobs counted in epochs scaled to it.
    epochs = plan["epochs"]
    assert recipe["epochs"] == epochs == len(result.metrics) and 1 < epochs < 18
    share = epochs / 18
    assert recipe["whiten_bias_epochs"] == max(1, int(3 * share + 0.5)) == plan["knobs"]["whiten_bias_epochs"]
    assert recipe["eval_every"] == max(1, int(3 * share + 0.5)) and recipe["average_start_epoch"] < epochs
    steps = torch.load(result.checkpoint, weights_only=True)["position"]["global_step"]
    assert steps == plan["total_steps"]
    assert record["environment"]["train_clock_s"] > 0


def test_resume_continues_the_plan_bit_identically(
    tiny_splits: Splits, budget_config: TrainConfig, tmp_path: Path
) -> None:
    straight = fit(replace(budget_config, run_dir=str(tmp_path / "straight")), tiny_splits, clock=FakeClock())

    def press_ctrl_c(event: StepEvent) -> None:
        if event.global_step == 5:  # mid-epoch 2
            os.kill(os.getpid(), signal.SIGINT)

    split = tmp_path / "split"
    with pytest.raises(TrainingInterrupted):
        fit(replace(budget_config, run_dir=str(split)), tiny_splits, on_step=press_ctrl_c, clock=FakeClock())
    resumed = fit(TrainConfig(resume=str(split), quiet=True, threads=1), tiny_splits, clock=FakeClock())
    assert _record(resumed)["plan"] == _record(straight)["plan"] | {"warm_up_s": _record(resumed)["plan"]["warm_up_s"]}
    states = [torch.load(result.checkpoint, weights_only=True)["model"] for result in (straight, resumed)]
    for name, tensor in states[0].items():
        assert torch.equal(tensor, states[1][name]), name
    assert [row["train_loss"] for row in straight.metrics] == [row["train_loss"] for row in resumed.metrics]


def test_a_slowdown_replans_the_rest_once(tiny_splits: Splits, budget_config: TrainConfig) -> None:
    clock, lrs = FakeClock(), []

    def slow_down(event: StepEvent) -> None:
        lrs.append(event.optimizer.param_groups[0]["lr"])
        if event.global_step == 3:  # from epoch 2 on, every step takes three times as long
            clock.tick = 3 * TICK

    result = fit(replace(budget_config, budget_s=1.0), tiny_splits, on_step=slow_down, clock=clock)
    plan = _record(result)["plan"]
    replanned = plan["replanned"]
    # Judged over epochs 2 and 3 (the first pays one-time costs; a window covers >= 10% of the budget): both slow.
    assert replanned is not None and replanned["after_epoch"] == 3 and replanned["direction"] == "shorter"
    assert replanned["measured_images_per_s"] == pytest.approx(plan["images_per_s"] / 3)
    assert replanned["total_steps"] < plan["total_steps"] and replanned["epochs"] == len(result.metrics)
    assert len(lrs) == replanned["total_steps"]  # the run trained the new length...
    assert replanned["clock_s"] < result.train_clock_s <= 1.1 * plan["budget_s"]  # ...and ended on time, slower
    peak = lrs.index(max(lrs))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :], strict=False))  # the decay compressed, no jump
    assert lrs[-2] == pytest.approx(DEFAULT.lr * DEFAULT.lr_end_factor)  # the last step's rate: the triangle's end


def test_a_speedup_lengthens_the_rest_once(tiny_splits: Splits, budget_config: TrainConfig) -> None:
    """The warm-up measured a slower machine than the run then trains on: the rest is stretched to fill the budget."""
    clock, lrs = FakeClock(), []

    def speed_up(event: StepEvent) -> None:
        lrs.append(event.optimizer.param_groups[0]["lr"])
        if event.global_step == 3:  # from epoch 2 on, every step takes half as long
            clock.tick = TICK / 2

    result = fit(replace(budget_config, budget_s=1.0), tiny_splits, on_step=speed_up, clock=clock)
    plan = _record(result)["plan"]
    replanned = plan["replanned"]
    assert replanned is not None and replanned["direction"] == "longer"
    assert replanned["measured_images_per_s"] == pytest.approx(plan["images_per_s"] * 2)
    assert replanned["total_steps"] > plan["total_steps"] and len(lrs) == replanned["total_steps"]
    assert 0.9 * plan["budget_s"] <= result.train_clock_s <= 1.1 * plan["budget_s"]
    assert lrs[-2] == pytest.approx(DEFAULT.lr * DEFAULT.lr_end_factor)  # the decay still ends where it should


class SlowStartClock(FakeClock):
    """A machine still warming up: its first ``slow_readings`` readings are three ticks apart, then one."""

    def __init__(self, slow_readings: int) -> None:
        super().__init__()
        self.slow_readings = slow_readings

    def __call__(self) -> float:
        self.slow_readings -= 1
        self.now += 3 * self.tick if self.slow_readings >= 0 else self.tick
        return self.now


def test_the_probe_keeps_each_candidates_faster_round(tiny_splits: Splits, budget_config: TrainConfig) -> None:
    """Timed once, the first candidate would carry the warm-up's slowness into the plan; its second round does not."""
    readings_in_the_first_round = 1 + 1 + 3  # the warm-up's start, the first timed step's start, three timed steps
    result = fit(budget_config, tiny_splits, clock=SlowStartClock(readings_in_the_first_round))
    plan = _record(result)["plan"]
    assert plan["images_per_s"] == pytest.approx(18 / TICK)
    assert plan["warm_up_s"] > 5 * TICK


def test_a_budget_without_room_for_one_epoch_is_refused_naming_the_minimum(
    tiny_splits: Splits, budget_config: TrainConfig
) -> None:
    with pytest.raises(BudgetTooSmall, match=r"cannot fit one epoch of 54 images .* the minimum budget is \d+s"):
        fit(replace(budget_config, budget_s=0.5), tiny_splits, clock=FakeClock(tick=1.0))
    assert not Path(budget_config.run_dir).exists()  # refused before a run folder was made
