"""Budgeted runs end to end on the tiny data, timed by a fake clock: the plan in run.json, resume, re-plan."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cifar_edge.train import TrainConfig, fit
from cifar_edge.train.budget.plan import BudgetTooSmall
from cifar_edge.train.data.load import Splits
from cifar_edge.train.fit import FitResult, TrainingInterrupted
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


@pytest.fixture
def unscored(tiny_splits: Splits) -> Splits:
    """The tiny data without validation images. A fake clock charges a tick per reading, so evaluation (which reads
    none) would be free while the plan prices the probe's ticks for it: without a validation split the fake machine
    and the plan agree on everything but one tick per epoch, which the controller corrects as it would any
    mispriced overhead."""
    return replace(tiny_splits, val_images=tiny_splits.val_images[:0], val_labels=tiny_splits.val_labels[:0])


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
    assert plan["images_per_s"] == pytest.approx(18 / TICK) and plan["warm_up_s"] > 0 and plan["replans"] == []
    assert plan["predicted_s"]["total_s"] <= 0.3 and plan["steps_per_epoch"] == 3
    assert plan["workload"]["val_images"] == 18 and plan["workload"]["final_passes"] == 9  # every view: 1 + 2 + 6
    # The recipe the run trained is the plan's: its length, and the knobs counted in epochs scaled to it.
    epochs = plan["epochs"]
    assert recipe["epochs"] == epochs == len(result.metrics) and 1 < epochs < 18
    share = epochs / 18
    assert recipe["whiten_bias_epochs"] == max(1, int(3 * share + 0.5)) == plan["knobs"]["whiten_bias_epochs"]
    assert recipe["eval_every"] == max(1, int(3 * share + 0.5)) and recipe["average_start_epoch"] < epochs
    checkpoint = torch.load(result.checkpoint, weights_only=True)
    assert checkpoint["position"]["global_step"] == plan["total_steps"]
    # The monitor passes were timed against the probe's (a fake tick each, like the probe's): evaluation at its pace.
    assert checkpoint["clock_speeds"]["eval_slowdown"] == pytest.approx(1.0)
    assert record["environment"]["train_clock_s"] > 0


class ResumedClock(FakeClock):
    """A resumed session's clock. The uninterrupted run reads the clock once where the split one reads it three
    times (the stop, the new session's start and its epoch's restart): the stop's reading is made free by the
    caller (tick 0), this clock makes its second reading free, so both runs see the same seconds."""

    def __init__(self, tick: float) -> None:
        super().__init__(tick)
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        return self.now if self.readings == 2 else super().__call__()


Load = Callable[[FakeClock, StepEvent], None]


def _straight_and_resumed(
    config: TrainConfig, splits: Splits, tmp_path: Path, load: Load, stop_at: int
) -> list[FitResult]:
    """The run without a stop and the same run stopped by Ctrl-C after global step ``stop_at`` and resumed;
    ``load(clock, event)`` sets each step's pace in both."""

    paces: list[float] = []

    def hooked(clock: FakeClock, stop: bool = False) -> Callable[[StepEvent], None]:
        def on_step(event: StepEvent) -> None:
            load(clock, event)
            if stop and event.global_step == stop_at:
                paces.append(clock.tick)  # the pace the resumed session starts at
                clock.tick = 0.0  # the stop's own reading: not part of the uninterrupted run
                os.kill(os.getpid(), signal.SIGINT)

        return on_step

    clock = FakeClock()
    straight = fit(replace(config, run_dir=str(tmp_path / "straight")), splits, on_step=hooked(clock), clock=clock)
    split, first_clock = tmp_path / "split", FakeClock()
    with pytest.raises(TrainingInterrupted):
        fit(replace(config, run_dir=str(split)), splits, on_step=hooked(first_clock, stop=True), clock=first_clock)
    clock = ResumedClock(paces[0])
    resumed = fit(TrainConfig(resume=str(split), quiet=True, threads=1), splits, on_step=hooked(clock), clock=clock)
    return [straight, resumed]


def _assert_identical(straight: FitResult, resumed: FitResult) -> None:
    assert _record(resumed)["plan"] == _record(straight)["plan"] | {"warm_up_s": _record(resumed)["plan"]["warm_up_s"]}
    assert resumed.train_clock_s == pytest.approx(straight.train_clock_s)
    states = [torch.load(result.checkpoint, weights_only=True)["model"] for result in (straight, resumed)]
    for name, tensor in states[0].items():
        assert torch.equal(tensor, states[1][name]), name
    assert [row["train_loss"] for row in straight.metrics] == [row["train_loss"] for row in resumed.metrics]


def test_resume_continues_the_plan_bit_identically(
    tiny_splits: Splits, budget_config: TrainConfig, tmp_path: Path
) -> None:
    def steady(clock: FakeClock, event: StepEvent) -> None:
        clock.tick = TICK

    _assert_identical(*_straight_and_resumed(budget_config, tiny_splits, tmp_path, steady, stop_at=5))  # mid-epoch 2


def _continuous(lrs: list[float]) -> bool:
    """The rates rise to one peak and then only fall, and no step moves them by more than a fifth of the peak: these
    runs are 20-60 steps long, so even their most compressed warm-up or decay moves the rate ~13% of the peak per
    step, and a jump at a re-plan (a restarted warm-up, a skipped decay) moves it by far more. The exact shape at a
    re-plan is tests/train/optim/test_schedule.py's."""
    peak = lrs.index(max(lrs))
    falls_after_peak = all(a >= b for a, b in itertools.pairwise(lrs[peak:]))
    rises_before = all(a <= b for a, b in itertools.pairwise(lrs[: peak + 1]))
    return falls_after_peak and rises_before and max(abs(a - b) for a, b in itertools.pairwise(lrs)) <= 0.2 * lrs[peak]


def test_a_slowdown_shortens_the_rest_and_ends_on_time(unscored: Splits, budget_config: TrainConfig) -> None:
    clock, lrs = FakeClock(), []

    def slow_down(event: StepEvent) -> None:
        lrs.append(event.optimizer.param_groups[0]["lr"])
        if event.global_step == 3:  # from epoch 2 on, every step takes three times as long
            clock.tick = 3 * TICK

    result = fit(replace(budget_config, budget_s=1.0), unscored, on_step=slow_down, clock=clock)
    plan = _record(result)["plan"]
    first, last = plan["replans"][0], plan["replans"][-1]
    # The first slow step is checked at once, inside epoch 2: its window holds three quiet steps and the slow one.
    assert first["global_step"] == 4 and first["after_epoch"] == 1 and first["direction"] == "shorter"
    assert first["measured_images_per_s"] == pytest.approx(plan["images_per_s"] * 4 / (3 + 3))
    # Damped: the first cut goes part of the way, the next checks the rest, never back.
    assert first["total_steps"] > last["total_steps"] and {r["direction"] for r in plan["replans"]} == {"shorter"}
    assert last["total_steps"] < plan["total_steps"] and last["epochs"] == len(result.metrics)
    assert len(lrs) == last["total_steps"]  # the run trained the new length...
    assert 0.95 * plan["budget_s"] <= result.train_clock_s <= 1.05 * plan["budget_s"]  # ...and ended on time
    assert _continuous(lrs)
    assert lrs[-2] == pytest.approx(DEFAULT.lr * DEFAULT.lr_end_factor)  # the last step's rate: the triangle's end


def test_a_slowdown_in_the_last_epochs_ends_the_run_inside_an_epoch(
    unscored: Splits, budget_config: TrainConfig
) -> None:
    """The last epoch's length is not fixed at its start: a machine slowing near the end cuts it short, on time."""
    clock, steps = FakeClock(), []

    def slow_down(event: StepEvent) -> None:
        steps.append(event.global_step)
        if event.global_step == 45:  # from step 46 on, three times slower, with ~0.25 s of the 1 s budget left
            clock.tick = 3 * TICK

    result = fit(replace(budget_config, budget_s=1.0), unscored, on_step=slow_down, clock=clock)
    plan = _record(result)["plan"]
    late = [replan for replan in plan["replans"] if replan["global_step"] > 45]
    assert late and all(replan["direction"] == "shorter" for replan in late)
    last = late[-1]
    assert last["total_steps"] % plan["steps_per_epoch"] and len(steps) == last["total_steps"]  # ends inside an epoch
    assert len(result.metrics) == last["epochs"]
    assert 0.95 * plan["budget_s"] <= result.train_clock_s <= 1.05 * plan["budget_s"]


def test_a_speedup_lengthens_the_rest(unscored: Splits, budget_config: TrainConfig) -> None:
    """The warm-up measured a slower machine than the run then trains on: the rest is stretched to fill the budget."""
    clock, lrs = FakeClock(), []

    def speed_up(event: StepEvent) -> None:
        lrs.append(event.optimizer.param_groups[0]["lr"])
        if event.global_step == 3:  # from epoch 2 on, every step takes half as long
            clock.tick = TICK / 2

    result = fit(replace(budget_config, budget_s=1.0), unscored, on_step=speed_up, clock=clock)
    plan = _record(result)["plan"]
    first = plan["replans"][0]
    assert first["direction"] == "longer" and first["measured_images_per_s"] > plan["images_per_s"]
    assert plan["replans"][-1]["total_steps"] > plan["total_steps"] and len(lrs) == plan["replans"][-1]["total_steps"]
    assert 0.95 * plan["budget_s"] <= result.train_clock_s <= 1.05 * plan["budget_s"]
    assert _continuous(lrs) and lrs[-2] == pytest.approx(DEFAULT.lr * DEFAULT.lr_end_factor)


def test_a_load_that_comes_and_goes_is_followed_both_ways(
    unscored: Splits, budget_config: TrainConfig, tmp_path: Path
) -> None:
    """A busy spell in the first part of the run: the plan shortens while it lasts and lengthens again after, the
    schedule stays continuous, the clock ends on the budget, and a resume from the middle is bit-identical."""

    def load(clock: FakeClock, event: StepEvent) -> None:
        clock.tick = 4 * TICK if 6 <= event.global_step < 30 else TICK  # steps 7-30: four times slower

    budget = replace(budget_config, budget_s=2.0)
    # Stopped mid-epoch 10, after the first re-plans, as the load lifts: the epoch is measured across two sessions.
    result, resumed = _straight_and_resumed(budget, unscored, tmp_path, load, stop_at=29)
    plan = _record(result)["plan"]
    directions = [replan["direction"] for replan in plan["replans"]]
    assert "shorter" in directions and "longer" in directions[directions.index("shorter") :]
    assert plan["replans"][0]["global_step"] < 29 and all(r["clock_s"] < result.train_clock_s for r in plan["replans"])
    assert 0.95 * 2.0 <= result.train_clock_s <= 1.05 * 2.0
    lrs = [row["lr"] for row in result.metrics]  # each epoch's last rate
    assert len(result.metrics) == plan["replans"][-1]["epochs"] == _record(result)["recipe"]["epochs"]
    assert all(a >= b for a, b in itertools.pairwise(lrs[lrs.index(max(lrs)) :]))
    _assert_identical(result, resumed)  # the re-plans, the schedule and the weights survive a stop and resume


def test_noise_does_not_make_the_plan_oscillate(unscored: Splits, budget_config: TrainConfig, tmp_path: Path) -> None:
    """Damping: epochs up to 4% faster or slower than planned, at random, change the length no more often than a
    steady run's own drift does (the fake machine's one unpriced tick per epoch), and never back and forth."""
    jitter = random.Random(0)
    runs = []
    for noise in (0.0, 0.04):
        clock = FakeClock()

        def on_step(event: StepEvent, clock: FakeClock = clock, noise: float = noise) -> None:
            if event.step == 3:  # a new epoch, a new pace
                clock.tick = TICK * (1 + jitter.uniform(-noise, noise))

        config = replace(budget_config, budget_s=1.0, run_dir=str(tmp_path / f"noise-{noise}"))
        runs.append(_record(fit(config, unscored, on_step=on_step, clock=clock)))
    steady, noisy = ([replan["direction"] for replan in run["plan"]["replans"]] for run in runs)
    assert len(noisy) <= len(steady) + 1 and len(set(noisy)) <= 1
    assert 0.95 <= runs[1]["environment"]["train_clock_s"] <= 1.05


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
