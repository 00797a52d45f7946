"""The learning-rate schedules: constant and the triangle; a re-plan and an extension."""

from __future__ import annotations

import itertools

import pytest

from cifar_edge.train.optim import LrSchedule
from cifar_edge.train.recipes import Recipe, get_recipe


def test_constant_is_one_throughout_and_a_schedule_is_plain_attributes() -> None:
    schedule = LrSchedule("constant", 10)
    assert {schedule(step) for step in range(12)} == {1.0}
    # Plain attributes only: LambdaLR checkpoints them (and a resume with more epochs extends total_steps).
    assert all(isinstance(value, (str, int, float)) for value in vars(schedule).values())


def test_triangle_rises_linearly_from_start_to_peak_then_falls_linearly_to_end() -> None:
    schedule = LrSchedule("triangle", total_steps=100, start_factor=0.5, peak_fraction=0.2, end_factor=0.1)
    factors = [schedule(step) for step in range(100)]
    assert factors[0] == pytest.approx(0.5)
    assert factors[20] == pytest.approx(1.0) and max(factors) == factors[20]  # the peak at 20% of the steps
    assert factors[99] == pytest.approx(0.1)  # the last optimizer step
    assert all(a < b for a, b in itertools.pairwise(factors[:21]))  # linear up ...
    assert all(a > b for a, b in itertools.pairwise(factors[20:]))  # ... and linear down
    assert factors[10] == pytest.approx(0.5 + 0.5 * 10 / 20)
    assert factors[60] == pytest.approx(1.0 - 0.9 * (60 - 20) / (99 - 20))


@pytest.mark.parametrize("name", ["default", "airbench"])
def test_a_recipes_triangle_peaks_at_its_peak_fraction_and_ends_at_its_end_factor(name: str) -> None:
    recipe = get_recipe(name)
    total = 1000
    shape = (recipe.lr_start_factor, recipe.lr_peak_fraction, recipe.lr_end_factor)
    factors = [LrSchedule(recipe.schedule, total, *shape)(step) for step in range(total)]
    peak = factors.index(max(factors))
    assert max(factors) == pytest.approx(1.0) and abs(peak - recipe.lr_peak_fraction * total) <= 1
    assert factors[0] == pytest.approx(recipe.lr_start_factor) and recipe.lr_start_factor < 1.0
    assert factors[-1] == pytest.approx(recipe.lr_end_factor) and recipe.lr_end_factor < 1.0


def test_a_schedule_without_a_shape_takes_the_recipes() -> None:
    schedule = LrSchedule("triangle", total_steps=10)
    recipe = Recipe(name="x", model="seed")
    assert (schedule.start_factor, schedule.peak_fraction, schedule.end_factor) == (
        recipe.lr_start_factor,
        recipe.lr_peak_fraction,
        recipe.lr_end_factor,
    )


def test_triangle_without_a_ramp_decays_linearly_from_the_first_step() -> None:
    schedule = LrSchedule("triangle", total_steps=11, start_factor=0.2, peak_fraction=0.0, end_factor=0.0)
    factors = [schedule(step) for step in range(11)]
    assert factors == pytest.approx([1.0 - step / 10 for step in range(11)])  # start_factor plays no part


@pytest.mark.parametrize("total", [300, 1641, 5000])
def test_the_triangle_follows_the_planned_steps(total: int) -> None:
    """A budget plans the steps; the warm-up, peak and decay are fractions of them, so they move with the plan."""
    recipe = get_recipe("default")
    shape = (recipe.lr_start_factor, recipe.lr_peak_fraction, recipe.lr_end_factor)
    factors = [LrSchedule("triangle", total, *shape)(step) for step in range(total)]
    assert abs(factors.index(max(factors)) - recipe.lr_peak_fraction * total) <= 1
    assert factors[-1] == pytest.approx(recipe.lr_end_factor) and factors[0] == pytest.approx(recipe.lr_start_factor)


@pytest.mark.parametrize("at", [10, 40, 70])  # during the warm-up, right after the peak, late in the decay
def test_a_replan_compresses_the_rest_without_a_jump(at: int) -> None:
    planned = LrSchedule("triangle", 100, start_factor=0.2, peak_fraction=0.23, end_factor=0.07)
    replanned = LrSchedule("triangle", 100, start_factor=0.2, peak_fraction=0.23, end_factor=0.07)
    replanned.replan(at, 80)
    factors = [replanned(step) for step in range(at, 80)]
    assert factors[0] == planned(at)  # the step it happened at keeps its rate: no jump
    assert factors[-1] == pytest.approx(0.07)  # the same end, 20 steps earlier
    rest = [planned(at + (step - at) * (99 - at) / (79 - at)) for step in range(at, 80)]
    assert factors == pytest.approx(rest)  # the remaining shape, at the new pace
    assert all(isinstance(value, (str, int, float)) for value in vars(replanned).values())  # LambdaLR saves them


def test_replans_in_both_directions_keep_rate_and_progress_continuous() -> None:
    schedule = LrSchedule("triangle", 100, start_factor=0.2, peak_fraction=0.23, end_factor=0.07)
    new_totals = {30: 60, 45: 150, 100: 120}  # shorter, then longer twice
    factors, progress = [], []
    for step in range(120):
        if step in new_totals:
            before = (schedule(step), schedule.progress(step))
            schedule.replan(step, new_totals[step])
            assert (schedule(step), schedule.progress(step)) == pytest.approx(before)
        factors.append(schedule(step))
        progress.append(schedule.progress(step))
    assert all(a < b for a, b in itertools.pairwise(progress)) and progress[-1] == pytest.approx(99 / 100)
    peak = factors.index(max(factors))
    assert all(a >= b for a, b in itertools.pairwise(factors[peak:])) and factors[-1] == pytest.approx(0.07)
    # No step is steeper than the warm-up's or the decay compressed from 69 planned steps into 29: no jump anywhere.
    steepest = max(0.8 / 23, 0.93 / 76 * 69 / 29)
    assert max(abs(a - b) for a, b in itertools.pairwise(factors)) <= steepest + 1e-9


def test_a_checkpointed_single_replan_reads_back_the_same() -> None:
    """Schedules saved before re-plans could repeat hold ``replanned_at`` and ``planned_total`` only."""
    replanned = LrSchedule("triangle", 100, start_factor=0.2, peak_fraction=0.23, end_factor=0.07)
    replanned.replan(40, 80)
    loaded = LrSchedule("triangle", 100, start_factor=0.2, peak_fraction=0.23, end_factor=0.07)
    loaded.__dict__.update({"replanned_at": 40, "planned_total": 100, "total_steps": 80})  # what LambdaLR restores
    assert [loaded(step) for step in range(40, 80)] == [replanned(step) for step in range(40, 80)]


def test_an_extension_forgets_the_replan_and_stretches_the_plain_shape() -> None:
    schedule = LrSchedule("triangle", 100, start_factor=0.2, peak_fraction=0.23, end_factor=0.07)
    schedule.replan(40, 80)
    schedule.extend(150)
    plain = LrSchedule("triangle", 150, start_factor=0.2, peak_fraction=0.23, end_factor=0.07)
    assert [schedule(step) for step in range(150)] == [plain(step) for step in range(150)]
