"""A budgeted run's plan and what a run costs: the measured speeds, the predicted seconds of any number of steps,
the plan as a typed record (until run.json), the one rule that scales the knobs counted in epochs, and the
arithmetic of mid-run re-plans.

policy.py decides a session's plan from these, probe.py measures the speeds, clock.py re-plans; this module only
computes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from cifar_edge.runtime.model_file import TTA_PASSES
from cifar_edge.train.distributed import steps_per_epoch, usable_images
from cifar_edge.train.recipes import Recipe

# Forward passes per image of the last epoch's evaluation: it scores every TTA view (fit.py), the bare one included.
FINAL_PASSES = sum(TTA_PASSES.values())


# The recipe's knobs counted in epochs: a plan scales them to its length and a re-plan re-scales them (epoch_knobs).
EPOCH_KNOBS = ("whiten_bias_epochs", "average_start_epoch", "eval_every")


class BudgetTooSmall(ValueError):
    """Not even one epoch fits in the budget; ``str()`` names the smallest budget that would."""


@dataclass(frozen=True)
class Candidate:
    batch_size: int
    images_per_s: float  # training steps (forward, backward, optimizer step), measured before the clock


@dataclass(frozen=True)
class Workload:
    """What a run costs besides its training steps, measured before the clock (0 = none), and its data's size."""

    train_images: int
    val_images: int = 0
    world_size: int = 1
    monitor_images_per_s: float = 0.0  # the mid-run monitor: one pass in the training precision
    final_images_per_s: float = 0.0  # one float32 pass (the last epoch makes FINAL_PASSES of them)
    epoch_overhead_s: float = 0.0  # per epoch: checkpoint and model files
    curves_s: float = 0.0  # one redraw of curves.png: after an epoch when curves_every_s have passed, and at the end
    curves_every_s: float = 0.0
    final_passes: int = 1  # forward passes per image of the last epoch's evaluation (FINAL_PASSES)

    def final_seconds(self) -> float:
        return self.final_passes * _pass_seconds(self.val_images, self.final_images_per_s)


@dataclass(frozen=True)
class CostModel:
    """Predicted seconds of a run, or of its rest after global step ``from_step``, at one batch size and speed."""

    batch_size: int
    images_per_s: float
    workload: Workload

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.workload.train_images, self.batch_size, self.workload.world_size)

    @property
    def epoch_images(self) -> int:
        return usable_images(self.workload.train_images, self.batch_size, self.workload.world_size)

    @property
    def epoch_overhead_s(self) -> float:
        """Saving after every epoch, and the share of a curves redraw an epoch of this length pays."""
        work = self.workload
        seconds = self.epoch_images / self.images_per_s + work.epoch_overhead_s
        share = 1.0 if seconds >= work.curves_every_s else seconds / work.curves_every_s
        return work.epoch_overhead_s + share * work.curves_s

    def images(self, total_steps: int) -> int:
        full, part = divmod(total_steps, self.steps_per_epoch)
        return full * self.epoch_images + min(part * self.batch_size, self.epoch_images)

    def seconds(self, total_steps: int, eval_every: int, from_step: int = 0) -> dict[str, float]:
        work = self.workload
        epochs, done_epochs = -(-total_steps // self.steps_per_epoch), from_step // self.steps_per_epoch
        # The last epoch's evaluation is the final one; an epoch in progress still has its monitor and saving ahead.
        monitors = (epochs - 1) // eval_every - done_epochs // eval_every
        parts = {
            "steps_s": (self.images(total_steps) - self.images(from_step)) / self.images_per_s,
            "monitor_s": monitors * _pass_seconds(work.val_images, work.monitor_images_per_s),
            "final_eval_s": work.final_seconds(),
            "overhead_s": (epochs - done_epochs) * self.epoch_overhead_s + work.curves_s,  # + the last redraw
        }
        return {**parts, "total_s": sum(parts.values())}

    def max_steps(self, budget_s: float, eval_every_for: Callable[[int], int], from_step: int = 0) -> int:
        """The most steps whose predicted seconds (from global step ``from_step`` on) fit in ``budget_s``;
        ``from_step`` when not one more step fits. ``eval_every_for(epochs)``: the monitor cadence."""
        per_epoch, best = self.steps_per_epoch, from_step
        done_epochs = from_step // per_epoch
        epochs = done_epochs + 1
        while True:
            # No run of this many epochs costs less (its earlier epochs' steps, the final evaluation, the overheads),
            # and this floor grows with the epochs: past it nothing longer fits either.
            earlier = max(0, (epochs - 1) * self.epoch_images - self.images(from_step))
            floor_s = earlier / self.images_per_s + self.workload.final_seconds()
            if floor_s + (epochs - done_epochs) * self.epoch_overhead_s > budget_s:
                return best
            # Bisect the steps of the last epoch (past the step reached, when it is the epoch in progress).
            low, high, every = 0, per_epoch, eval_every_for(epochs)
            least = max(0, from_step - (epochs - 1) * per_epoch)
            while low < high:
                middle = (low + high + 1) // 2
                fits = self.seconds((epochs - 1) * per_epoch + middle, every, from_step)["total_s"] <= budget_s
                low, high = (middle, high) if fits or middle <= least else (low, middle - 1)
            if low > least:
                best = max(best, (epochs - 1) * per_epoch + low)
            epochs += 1


@dataclass(frozen=True)
class Replan:
    """One mid-run re-plan (budget/clock.py): when, the speed it measured, where the old length would have ended at
    that speed, and the new length."""

    after_epoch: int  # the epochs done when it was made (inside an epoch: the ones before it)
    global_step: int
    clock_s: float
    measured_images_per_s: float
    forecast_s: float  # the training clock at the end of the old length, at the measured speed
    total_steps: int
    epochs: int
    direction: str  # "shorter" or "longer"

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Replan:
        names = {field.name for field in fields(cls)}
        # Runs from before re-plans could repeat recorded no forecast: 0 says "not recorded".
        return cls(**{"forecast_s": 0.0, **{key: value for key, value in record.items() if key in names}})


@dataclass(frozen=True)
class SizeChoice:
    """Why the size menu's smaller model trained instead of the recipe's (budget/policy.py)."""

    asked: str  # the recipe's model, e.g. "airnet 32/128/128"
    trained: str
    asked_planned_epochs: float | None  # None: the recipe's model fit no epoch
    min_epochs: float


@dataclass(frozen=True)
class Extension:
    """``--epochs N`` on resume ends the plan: the epochs still to come are whole ones, ``total_steps`` in all."""

    epochs: int
    total_steps: int = 0  # set once the resumed session knows its position


@dataclass(frozen=True)
class Plan:
    """A budgeted run's plan, typed until :meth:`record` writes it to run.json and checkpoint.pt."""

    budget_s: float
    candidate: Candidate  # the chosen batch size and its measured speed (rounded as recorded)
    total_steps: int
    steps_per_epoch: int
    knobs: dict[str, Any]  # the recipe fields the plan sets (scaled_knobs)
    predicted: dict[str, float]  # seconds by part (CostModel.seconds)
    speeds: list[dict[str, Any]]  # per candidate: measured img/s and what would fit
    workload: Workload
    reason: str
    source: str = "--budget"  # what set the budget, for messages
    warm_up_s: float = 0.0  # the measurement's seconds, before the clock
    precision: str = "fp32"  # of the measured steps
    design_epochs: int = 0  # the recipe's own epochs, which the knobs were scaled from
    design_knobs: dict[str, int] | None = None  # the recipe's own EPOCH_KNOBS (None: recorded before re-scaling)
    size: SizeChoice | None = None
    replans: tuple[Replan, ...] = ()  # every mid-run re-plan, in order
    extended: Extension | None = None

    @property
    def planned_epochs(self) -> float:
        return round(self.total_steps / self.steps_per_epoch, 3)

    @property
    def current_total_steps(self) -> int:
        """The run's total steps now: as extended by --epochs on resume, as re-planned, or as planned."""
        if self.extended is not None:
            return self.extended.total_steps
        return self.replans[-1].total_steps if self.replans else self.total_steps

    def recipe_for(self, design: Recipe) -> Recipe:
        """``design`` with the plan's knobs."""
        return replace(design, **self.knobs)

    def summary(self) -> str:
        """The plan in one phrase for the progress header."""
        count = len(self.replans)
        steps = f"{self.current_total_steps} steps" + (f" (re-planned {count}x)" if count else "")
        batch, speed = self.candidate.batch_size, self.candidate.images_per_s
        return (
            f"budget {self.budget_s:g}s: {steps} = {self.planned_epochs:g} epochs at batch {batch}, "
            f"{speed:.0f} img/s measured in a {self.warm_up_s:.1f}s warm-up (outside the clock)"
        )

    def record(self) -> dict[str, Any]:
        """run.json's and checkpoint.pt's ``plan``: plain JSON, enough for --resume and further re-plans."""
        record: dict[str, Any] = {
            "source": self.source,
            "warm_up_s": self.warm_up_s,
            "precision": self.precision,
            "design_epochs": self.design_epochs,
            "design_knobs": self.design_knobs,
            "budget_s": self.budget_s,
            "speeds": self.speeds,
            "workload": asdict(self.workload),
            "batch_size": self.candidate.batch_size,
            "images_per_s": round(self.candidate.images_per_s, 3),
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "planned_epochs": self.planned_epochs,
            "epochs": self.knobs["epochs"],
            "predicted_s": {key: round(value, 3) for key, value in self.predicted.items()},
            "knobs": self.knobs,
            "reason": self.reason,
            "replans": [asdict(replan) for replan in self.replans],
        }
        if self.size is not None:
            record["size"] = asdict(self.size)
        if self.extended is not None:
            record["extended"] = asdict(self.extended)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Plan:
        """The plan a checkpoint recorded (:meth:`record`'s output)."""
        optional = {"size": SizeChoice, "extended": Extension}
        parts: dict[str, Any] = {name: kind(**record[name]) for name, kind in optional.items() if record.get(name)}
        # Runs from before re-plans could repeat recorded at most one, as "replanned".
        replans = record.get("replans", [record["replanned"]] if record.get("replanned") else [])
        return cls(
            budget_s=record["budget_s"],
            candidate=Candidate(record["batch_size"], record["images_per_s"]),
            total_steps=record["total_steps"],
            steps_per_epoch=record["steps_per_epoch"],
            knobs=record["knobs"],
            predicted=record["predicted_s"],
            speeds=record["speeds"],
            workload=Workload(**record["workload"]),
            reason=record["reason"],
            source=record["source"],
            warm_up_s=record["warm_up_s"],
            precision=record["precision"],
            design_epochs=record["design_epochs"],
            design_knobs=record.get("design_knobs"),
            replans=tuple(Replan.from_record(replan) for replan in replans),
            **parts,
        )

    def rescaled_knobs(self, epochs: int, current: Recipe, done_epochs: int) -> dict[str, int]:
        """The epoch-counted knobs of a rest re-planned to ``epochs`` epochs in all, after ``done_epochs``: the
        monitor cadence re-scaled by the plan's rule; the bias freeze and the averaging start too while still ahead
        (never into the past), once reached kept. ``current``: the recipe the run trains now."""
        knobs = {"epochs": epochs}
        if not self.design_knobs:
            return knobs
        scaled = epoch_knobs(self.design_knobs, self.design_epochs, epochs)
        knobs["eval_every"] = scaled["eval_every"]
        for name in ("whiten_bias_epochs", "average_start_epoch"):
            if getattr(current, name) > done_epochs:
                knobs[name] = max(done_epochs, scaled[name])
        return knobs

    def eval_every_for(self, epochs: int) -> int:
        """The monitor cadence of a run of ``epochs`` epochs (the plan's own, when recorded before re-scaling)."""
        if not self.design_knobs:
            every: int = self.knobs["eval_every"]
            return every
        return epoch_knobs(self.design_knobs, self.design_epochs, epochs)["eval_every"]


def epoch_knobs(design: dict[str, int], design_epochs: int, epochs: int) -> dict[str, int]:
    """The EPOCH_KNOBS of a run of ``epochs`` epochs, from the recipe's own (``design``, tuned at ``design_epochs``):
    each keeps its share of the run, rounded half up, with whiten_bias_epochs and eval_every at least 1 (0 would mean
    "never frozen" / nothing; a recipe's 0 stays off) and the averaging start before the last epoch."""
    share = epochs / design_epochs

    def scale(value: int, minimum: int = 0) -> int:
        return max(minimum, math.floor(value * share + 0.5))  # half up, not Python's half-to-even

    bias = design["whiten_bias_epochs"]
    return {
        "whiten_bias_epochs": scale(bias, 1) if bias else 0,
        "average_start_epoch": min(epochs - 1, scale(design["average_start_epoch"])),
        "eval_every": scale(design["eval_every"], 1),
    }


def rest_cost(plan: Plan, images_per_s: float, eval_slowdown: float | None = None) -> CostModel:
    """The cost of a run's rest at a measured ``images_per_s``: saving slowed (or sped up) as the steps; evaluation
    passes ``eval_slowdown`` times the probe's seconds as measured mid-run (None: slowed as the steps), because a busy
    CPU slows a forward pass less than a training step (docs/training.md, 'The controller')."""
    slower = images_per_s / plan.candidate.images_per_s
    evals = slower if eval_slowdown is None else 1 / eval_slowdown
    work = replace(
        plan.workload,
        monitor_images_per_s=plan.workload.monitor_images_per_s * evals,
        final_images_per_s=plan.workload.final_images_per_s * evals,
        epoch_overhead_s=plan.workload.epoch_overhead_s / slower,
        curves_s=plan.workload.curves_s / slower,
    )
    return CostModel(plan.candidate.batch_size, images_per_s, work)


def forecast_s(
    plan: Plan,
    *,
    done_steps: int,
    elapsed_s: float,
    images_per_s: float,
    total_steps: int,
    eval_slowdown: float | None = None,
) -> float:
    """The training clock at the end of a run ``total_steps`` long whose first ``done_steps`` steps (and what came
    with them) took ``elapsed_s``, if the rest trains at ``images_per_s`` (evaluation: see :func:`rest_cost`)."""
    every = plan.eval_every_for(-(-total_steps // plan.steps_per_epoch))
    model = rest_cost(plan, images_per_s, eval_slowdown)
    return elapsed_s + model.seconds(total_steps, every, done_steps)["total_s"]


def replan_steps(
    plan: Plan, done_steps: int, elapsed_s: float, images_per_s: float, eval_slowdown: float | None = None
) -> int:
    """New total steps for a run of ``plan`` whose first ``done_steps`` steps took ``elapsed_s`` and now trains at
    ``images_per_s`` (evaluation: see :func:`rest_cost`): the most that still end within the budget at that speed,
    more or fewer than now; out of time, the epoch in progress ends at once (between epochs: after one more step,
    as the final evaluation needs an epoch to end)."""
    model = rest_cost(plan, images_per_s, eval_slowdown)
    steps = model.max_steps(plan.budget_s - elapsed_s, plan.eval_every_for, from_step=done_steps)
    return max(done_steps + (done_steps % model.steps_per_epoch == 0), steps)


def _pass_seconds(images: int, images_per_s: float) -> float:
    return images / images_per_s if images and images_per_s > 0 else 0.0
