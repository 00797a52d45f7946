"""The budget planner on fake speed tables: steps within the budget, overheads counted, knobs scaled by one rule."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from cifar_edge.train.budget.plan import (
    FINAL_PASSES,
    BudgetTooSmall,
    Candidate,
    CostModel,
    Extension,
    Plan,
    Replan,
    SizeChoice,
    Workload,
    forecast_s,
    replan_steps,
)
from cifar_edge.train.budget.policy import SWITCH_GAIN, plan_budget, scaled_knobs
from cifar_edge.train.recipes import DEFAULT, SEED

# CIFAR-10's default split with made-up speeds: the planner only ever sees numbers like these.
WORKLOAD = Workload(
    train_images=45_000,
    val_images=5_000,
    monitor_images_per_s=4_000.0,
    final_images_per_s=2_000.0,
    epoch_overhead_s=0.5,
    curves_s=0.3,
    curves_every_s=10.0,
)
OWN = [Candidate(512, 1_500.0)]


def _seconds(plan: Plan) -> float:
    """The predicted seconds of a plan, recomputed from its own steps and cadence."""
    model = CostModel(
        plan.candidate.batch_size, plan.candidate.images_per_s, replace(WORKLOAD, final_passes=FINAL_PASSES)
    )
    return model.seconds(plan.total_steps, plan.knobs["eval_every"])["total_s"]


def test_the_plan_fits_the_budget_and_one_more_step_would_not() -> None:
    for budget in (90, 600, 3600):
        plan = plan_budget(budget, DEFAULT, OWN, WORKLOAD)
        assert plan.predicted["total_s"] == pytest.approx(_seconds(plan)) and plan.predicted["total_s"] <= budget
        assert plan.predicted["total_s"] > 0.95 * budget  # it uses the budget, not a safe fraction of it
        longer = replace(plan, total_steps=plan.total_steps + 1)
        longer_knobs = scaled_knobs(DEFAULT, 512, -(-longer.total_steps // plan.steps_per_epoch))
        assert _seconds(replace(longer, knobs=longer_knobs)) > budget
        assert plan.knobs["epochs"] == -(-plan.total_steps // plan.steps_per_epoch)  # whole epochs, the last partial


def test_steps_grow_with_the_budget_and_never_pass_it() -> None:
    budgets = [60 + 20 * index for index in range(60)]
    plans = [plan_budget(budget, DEFAULT, OWN, WORKLOAD) for budget in budgets]
    assert all(a.total_steps <= b.total_steps for a, b in itertools.pairwise(plans))
    assert all(plan.predicted["total_s"] <= budget for plan, budget in zip(plans, budgets, strict=True))
    # With several batch sizes the plan may switch batch, but the training it buys still grows with the budget.
    table = [Candidate(256, 1_450.0), Candidate(512, 1_500.0), Candidate(1024, 1_900.0)]
    images = []
    for budget in budgets:
        plan = plan_budget(budget, DEFAULT, table, WORKLOAD)
        model = CostModel(plan.candidate.batch_size, plan.candidate.images_per_s, WORKLOAD)
        images.append(model.images(plan.total_steps))
    assert images == sorted(images)


def test_evaluation_and_saving_are_paid_for() -> None:
    bare = plan_budget(600, DEFAULT, OWN, Workload(45_000))
    costly = plan_budget(600, DEFAULT, OWN, replace(WORKLOAD, epoch_overhead_s=3.0))
    assert bare.predicted["steps_s"] <= 600 and bare.predicted["monitor_s"] == bare.predicted["overhead_s"] == 0
    parts = costly.predicted
    epochs = costly.knobs["epochs"]
    assert parts["overhead_s"] == pytest.approx(epochs * (3.0 + 0.3) + 0.3)  # each epoch saves and redraws, + the end
    monitors = (epochs - 1) // costly.knobs["eval_every"]
    assert parts["monitor_s"] == pytest.approx(monitors * 5_000 / 4_000)
    assert parts["final_eval_s"] == pytest.approx(9 * 5_000 / 2_000)  # bare, flip (2) and flip + shift (6)
    assert costly.total_steps < bare.total_steps
    others = parts["monitor_s"] + parts["final_eval_s"] + parts["overhead_s"]
    assert parts["steps_s"] == pytest.approx(600 - others, abs=1)  # the steps get what the rest leaves


def test_short_epochs_pay_only_their_share_of_a_curves_redraw() -> None:
    tiny = Workload(train_images=100, epoch_overhead_s=0.01, curves_s=0.5, curves_every_s=10.0)
    model = CostModel(100, 1_000.0, tiny)  # 0.1 s of steps per epoch: a redraw every ~90 epochs
    assert model.epoch_overhead_s == pytest.approx(0.01 + 0.5 * 0.11 / 10)


def test_another_batch_size_must_buy_clearly_more_training() -> None:
    close = [Candidate(512, 1_500.0), Candidate(1024, 1_500.0 * (1 + SWITCH_GAIN / 2))]
    plan = plan_budget(600, DEFAULT, close, WORKLOAD)
    assert plan.candidate.batch_size == 512 and "(the recipe's)" in plan.reason
    assert [row["batch_size"] for row in plan.speeds] == [512, 1024]  # every candidate measured is recorded
    faster = [Candidate(512, 1_500.0), Candidate(1024, 2_000.0)]
    plan = plan_budget(600, DEFAULT, faster, WORKLOAD)
    assert plan.candidate.batch_size == 1024 and "more images" in plan.reason
    assert plan.knobs["lr"] == pytest.approx(2 * DEFAULT.lr)  # linear scaling, as the recipes scale between batches
    assert plan.knobs["lookahead_every"] == 3  # 5 x 512 / 1024 = 2.5, rounded half up: the same images apart


def test_knobs_keep_their_share_of_the_run() -> None:
    assert scaled_knobs(DEFAULT, 512, 18) == {
        "epochs": 18,
        "batch_size": 512,
        "lr": DEFAULT.lr,
        "whiten_bias_epochs": 3,
        "average_start_epoch": 3,
        "eval_every": 3,
        "lookahead_every": 5,
    }  # the length the recipe was designed at changes nothing
    doubled = scaled_knobs(DEFAULT, 512, 36)
    assert (doubled["whiten_bias_epochs"], doubled["average_start_epoch"], doubled["eval_every"]) == (6, 6, 6)
    short = scaled_knobs(DEFAULT, 512, 2)
    assert short["whiten_bias_epochs"] == 1  # never 0, which would mean "never frozen"
    assert short["eval_every"] == 1 and short["average_start_epoch"] == 0  # averaging still runs in the run
    assert scaled_knobs(SEED, 64, 20)["whiten_bias_epochs"] == 0  # a knob the recipe does not use stays off


def test_a_budget_without_room_for_one_epoch_names_the_minimum() -> None:
    with pytest.raises(BudgetTooSmall) as caught:
        plan_budget(20, DEFAULT, OWN, WORKLOAD)
    message = str(caught.value)
    minimum = int(message.split("the minimum budget is ")[1].split("s")[0])
    assert "--budget of 20s cannot fit one epoch of 45000 images" in message and minimum > 20
    assert plan_budget(minimum, DEFAULT, OWN, WORKLOAD).knobs["epochs"] == 1  # and that minimum does fit


def test_a_replan_fits_the_rest_to_the_measured_speed_both_ways() -> None:
    plan = plan_budget(600, DEFAULT, OWN, WORKLOAD)
    spent, done = (
        160.0,
        5 * plan.steps_per_epoch,
    )  # five epochs at the planned pace take ~155 s (steps, saving, monitor)
    slowed = replan_steps(plan, done_steps=done, elapsed_s=spent, images_per_s=1_000.0)
    assert done < slowed < plan.total_steps
    rest = CostModel(512, 1_000.0, replace(WORKLOAD, final_passes=FINAL_PASSES, epoch_overhead_s=0.75, curves_s=0.45))
    assert rest.seconds(slowed, plan.eval_every_for(-(-slowed // 87)), from_step=done)["total_s"] <= 600 - spent + 1e-9
    on_time = forecast_s(plan, done_steps=done, elapsed_s=spent, images_per_s=1_500.0, total_steps=plan.total_steps)
    assert on_time == pytest.approx(600, abs=8)  # the plan's own forecast at its own pace: the budget
    sped_up = replan_steps(plan, done, spent, 2_000.0)
    assert sped_up > plan.total_steps  # faster than planned: the rest is lengthened
    assert forecast_s(plan, done_steps=done, elapsed_s=spent, images_per_s=2_000.0, total_steps=sped_up) <= 600
    assert replan_steps(plan, done, 599.0, 1_000.0) == done + 1  # out of time between epochs: one last step


def test_a_replan_inside_an_epoch_counts_the_steps_already_taken() -> None:
    plan = plan_budget(600, DEFAULT, OWN, WORKLOAD)
    at_epoch_end, inside = 5 * plan.steps_per_epoch, 5 * plan.steps_per_epoch + 40
    # Forty steps further on at the planned pace the same end is forecast...
    steps_s = 40 * 512 / 1_500.0
    forecast = {"images_per_s": 1_500.0, "total_steps": plan.total_steps}
    assert forecast_s(plan, done_steps=inside, elapsed_s=160.0 + steps_s, **forecast) == pytest.approx(
        forecast_s(plan, done_steps=at_epoch_end, elapsed_s=160.0, **forecast)
    )
    slow_s = 40 * 512 / 1_000.0  # and at a slower pace the same shorter length
    assert replan_steps(plan, inside, 160.0 + slow_s, 1_000.0) == replan_steps(plan, at_epoch_end, 160.0, 1_000.0)
    assert replan_steps(plan, inside, 599.0, 1_000.0) == inside  # out of time inside an epoch: it ends now


def test_evaluation_measured_to_slow_less_than_the_steps_leaves_room_for_more_steps() -> None:
    plan = plan_budget(600, DEFAULT, OWN, WORKLOAD)
    busy = {"done_steps": 2 * 88, "elapsed_s": 200.0, "images_per_s": 1_500.0 / 4.5, "total_steps": 4 * 88}
    as_the_steps, measured = forecast_s(plan, **busy), forecast_s(plan, **busy, eval_slowdown=2.0)
    final_s = WORKLOAD.val_images / WORKLOAD.final_images_per_s * FINAL_PASSES
    assert as_the_steps - measured == pytest.approx(final_s * (4.5 - 2.0) + 1 * 5_000 / 4_000 * (4.5 - 2.0))
    assert replan_steps(plan, 176, 200.0, 1_500.0 / 4.5, 2.0) > replan_steps(plan, 176, 200.0, 1_500.0 / 4.5)


def test_a_replan_rescales_the_epoch_knobs_still_ahead() -> None:
    plan = plan_budget(600, DEFAULT, OWN, WORKLOAD)  # 18-epoch design: bias freeze, averaging, monitor at 3
    now = replace(DEFAULT, whiten_bias_epochs=3, average_start_epoch=3)
    assert plan.rescaled_knobs(36, now, done_epochs=1) == {
        "epochs": 36,
        "whiten_bias_epochs": 6,
        "average_start_epoch": 6,
        "eval_every": 6,
    }
    # Past the bias freeze and the averaging start: they stay; an earlier start is never put into the past.
    assert plan.rescaled_knobs(6, now, done_epochs=4) == {"epochs": 6, "eval_every": 1}
    assert plan.rescaled_knobs(6, now, done_epochs=2)["average_start_epoch"] == 2
    old = replace(plan, design_knobs=None)  # a plan recorded before re-scaling: only the length changes
    assert old.rescaled_knobs(36, now, 1) == {"epochs": 36} and old.eval_every_for(36) == plan.knobs["eval_every"]


def test_the_plan_stays_typed_until_its_record_and_reads_back_the_same() -> None:
    plan = replace(plan_budget(600, DEFAULT, OWN, WORKLOAD), warm_up_s=1.5, precision="bf16")
    record = plan.record()
    assert record["batch_size"] == 512 and record["epochs"] == plan.knobs["epochs"] and record["replans"] == []
    assert record["design_epochs"] == DEFAULT.epochs and record["source"] == "--budget"
    assert "size" not in record and "extended" not in record
    assert plan.current_total_steps == plan.total_steps
    changed = replace(
        plan,
        size=SizeChoice("airnet 32/128/128", "airnet-s", 2.5, 3.0),
        replans=(
            Replan(3, 99, 12.5, 900.0, 640.0, plan.total_steps - 30, 12, "shorter"),
            Replan(5, 160, 160.0, 1600.0, 580.0, plan.total_steps - 10, 12, "longer"),
        ),
    )
    assert changed.current_total_steps == plan.total_steps - 10
    assert Plan.from_record(changed.record()).record() == changed.record()
    # A run recorded when a plan re-planned at most once reads back with that one re-plan.
    first = {key: value for key, value in changed.record()["replans"][0].items() if key != "forecast_s"}
    old = {**changed.record(), "replanned": {**first, "planned_images_per_s": 1500.0}}
    del old["replans"], old["design_knobs"]
    assert Plan.from_record(old).replans == (replace(changed.replans[0], forecast_s=0.0),)
    extended = replace(changed, extended=Extension(30, 4000))
    assert extended.current_total_steps == 4000 and extended.record()["extended"] == {"epochs": 30, "total_steps": 4000}
