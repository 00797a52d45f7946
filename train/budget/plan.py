"""Planning a run to a wall-clock budget: from measured speeds to a number of optimizer steps and scaled knobs.

Budget-aware linear decay (Li, Yumer and Ramanan, "Budgeted Training", ICLR 2020): a schedule that decays to its end
at the budget beats a longer one cut off there. The triangle schedule is defined in fractions of the run's steps
(optim/schedule.py), so planning the steps stretches it to the budget; the knobs a recipe counts in epochs are scaled
by one rule (:func:`scaled_knobs`). budget/probe.py measures the speeds; this module only computes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cifar_edge.runtime.passes import TTA_PASSES
from cifar_edge.train.distill import TEACHER_PASS_MODES
from cifar_edge.train.distributed import steps_per_epoch, usable_images
from cifar_edge.train.recipes import Recipe

# Forward passes per image of the last epoch's evaluation: it scores every TTA view (fit.py), the bare one included.
FINAL_PASSES = sum(TTA_PASSES.values())
# Another batch size replaces the recipe's own only when it fits this much more training (in images) into the
# budget: the recipe was tuned at its own batch, and other batches scored lower at equal epochs (docs/training.md).
SWITCH_GAIN = 0.10


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
    """Predicted seconds of a run, or of its rest after ``from_epoch`` whole epochs, at one batch size and speed."""

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

    def seconds(self, total_steps: int, eval_every: int, from_epoch: int = 0) -> dict[str, float]:
        work = self.workload
        epochs = -(-total_steps // self.steps_per_epoch)
        monitors = (epochs - 1) // eval_every - from_epoch // eval_every  # the last epoch's evaluation is the final
        parts = {
            "steps_s": (self.images(total_steps) - from_epoch * self.epoch_images) / self.images_per_s,
            "monitor_s": monitors * _pass_seconds(work.val_images, work.monitor_images_per_s),
            "final_eval_s": work.final_seconds(),
            "overhead_s": (epochs - from_epoch) * self.epoch_overhead_s + work.curves_s,  # + the last redraw
        }
        return {**parts, "total_s": sum(parts.values())}

    def max_steps(self, budget_s: float, eval_every_for: Callable[[int], int], from_epoch: int = 0) -> int:
        """The most steps whose predicted seconds (from epoch ``from_epoch`` on) fit in ``budget_s``; as many as
        the ``from_epoch`` epochs done when not one more step fits. ``eval_every_for(epochs)``: the monitor cadence."""
        per_epoch, best, epochs = self.steps_per_epoch, from_epoch * self.steps_per_epoch, from_epoch + 1
        while True:
            # No run of this many epochs costs less (its earlier epochs' steps, the final evaluation, the overheads),
            # and this floor grows with the epochs: past it nothing longer fits either.
            floor_s = (epochs - 1 - from_epoch) * self.epoch_images / self.images_per_s + self.workload.final_seconds()
            if floor_s + (epochs - from_epoch) * self.epoch_overhead_s > budget_s:
                return best
            low, high, every = 0, per_epoch, eval_every_for(epochs)  # bisect the steps of the last epoch
            while low < high:
                middle = (low + high + 1) // 2
                fits = self.seconds((epochs - 1) * per_epoch + middle, every, from_epoch)["total_s"] <= budget_s
                low, high = (middle, high) if fits else (low, middle - 1)
            if low:
                best = max(best, (epochs - 1) * per_epoch + low)
            epochs += 1


@dataclass(frozen=True)
class Plan:
    budget_s: float
    candidate: Candidate  # the chosen batch size and its measured speed
    total_steps: int
    steps_per_epoch: int
    knobs: dict[str, Any]  # the recipe fields the plan sets (scaled_knobs)
    predicted: dict[str, float]  # seconds by part (CostModel.seconds)
    speeds: list[dict[str, Any]]  # per candidate: measured img/s and what would fit
    workload: Workload
    reason: str
    extra: dict[str, Any] = field(default_factory=dict)  # the caller's facts: source, warm-up seconds, precision

    def record(self) -> dict[str, Any]:
        """run.json's and checkpoint.pt's ``plan``: plain JSON, enough for --resume and one re-plan."""
        return {
            **self.extra,
            "budget_s": self.budget_s,
            "speeds": self.speeds,
            "workload": asdict(self.workload),
            "batch_size": self.candidate.batch_size,
            "images_per_s": round(self.candidate.images_per_s, 3),
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "planned_epochs": round(self.total_steps / self.steps_per_epoch, 3),
            "epochs": self.knobs["epochs"],
            "predicted_s": {key: round(value, 3) for key, value in self.predicted.items()},
            "knobs": self.knobs,
            "reason": self.reason,
            "replanned": None,
        }


def scaled_knobs(design: Recipe, batch_size: int, epochs: int) -> dict[str, Any]:
    """The recipe fields a plan of ``epochs`` epochs at ``batch_size`` sets, from the recipe as designed.

    The rule: a knob counted in epochs keeps its share of the run, round(value x epochs / design.epochs), with
    whiten_bias_epochs and eval_every at least 1 (0 would mean "never frozen" / nothing) and the averaging start
    before the last epoch; warmup_epochs the same share unrounded. Per-step knobs follow the batch as the recipes
    do between batch sizes: lr x batch / design batch, lookahead_every x design batch / batch (the same images
    between averaging updates). The triangle's warm-up, peak and decay and the lookahead ramp (step / total steps)
    are fractions of the planned steps already, so they need no rule.
    """
    share, per_image = epochs / design.epochs, design.batch_size / batch_size

    def scale(value: float, minimum: int = 0, factor: float = share) -> int:
        return max(minimum, math.floor(value * factor + 0.5))  # half up, not Python's half-to-even

    return {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": design.lr / per_image,
        "whiten_bias_epochs": scale(design.whiten_bias_epochs, 1) if design.whiten_bias_epochs else 0,
        "average_start_epoch": min(epochs - 1, scale(design.average_start_epoch)),
        "eval_every": scale(design.eval_every, 1),
        "warmup_epochs": design.warmup_epochs * share,
        "lookahead_every": scale(design.lookahead_every, 1, per_image) if design.lookahead_every else 0,
    }


def plan_budget(
    budget_s: float, design: Recipe, candidates: list[Candidate], workload: Workload, source: str = "--budget"
) -> Plan:
    """The plan that trains the most within ``budget_s`` (see SWITCH_GAIN); BudgetTooSmall when no candidate fits
    one epoch. ``source`` names the budget in messages ("--budget", "the recipe's cpu_budget_s")."""
    workload = replace(workload, final_passes=FINAL_PASSES)
    candidates = [_with_teacher(design, candidate, workload) for candidate in candidates]
    fitted = []
    for candidate in candidates:
        model = CostModel(candidate.batch_size, candidate.images_per_s, workload)
        steps = model.max_steps(budget_s, lambda epochs, b=candidate.batch_size: _eval_every(design, b, epochs))
        fitted.append((candidate, model, steps))
    speeds = [
        {"batch_size": c.batch_size, "images_per_s": round(c.images_per_s, 3), "steps": s, "images": m.images(s)}
        for c, m, s in fitted
    ]
    fitting = [row for row in fitted if row[2] >= row[1].steps_per_epoch]
    if not fitting:
        raise BudgetTooSmall(_too_small(budget_s, design, fitted, source))
    (candidate, model, steps), reason = _choose(design, fitting)
    knobs = scaled_knobs(design, candidate.batch_size, -(-steps // model.steps_per_epoch))
    predicted = model.seconds(steps, knobs["eval_every"])
    return Plan(budget_s, candidate, steps, model.steps_per_epoch, knobs, predicted, speeds, workload, reason)


def _with_teacher(design: Recipe, candidate: Candidate, workload: Workload) -> Candidate:
    """The candidate's speed with a distillation teacher's extra no-gradient pass (distill.TEACHER_PASS_MODES) on its
    share of the steps, priced at the monitor's speed (one inference pass in the training precision)."""
    if design.distill not in TEACHER_PASS_MODES or workload.monitor_images_per_s <= 0:
        return candidate
    teacher_s = (1 - design.distill_start) / (workload.monitor_images_per_s * workload.world_size)
    return replace(candidate, images_per_s=1 / (1 / candidate.images_per_s + teacher_s))


def planned_recipe(design: Recipe, knobs: dict[str, Any]) -> Recipe:
    return replace(design, **knobs)


def replan_steps(
    plan: dict[str, Any], done_epochs: int, elapsed_s: float, images_per_s: float, longer: bool = False
) -> int:
    """New total steps for a run of recorded ``plan`` whose ``done_epochs`` epochs took ``elapsed_s`` and now train
    at ``images_per_s``: the most that still end within the budget at that speed (evaluations and overheads slowed
    alike), never more than planned unless ``longer``, at least one more step (the final evaluation needs an epoch
    to end)."""
    slower = images_per_s / plan["images_per_s"]
    work = Workload(**plan["workload"])
    work = replace(
        work,
        monitor_images_per_s=work.monitor_images_per_s * slower,
        final_images_per_s=work.final_images_per_s * slower,
        epoch_overhead_s=work.epoch_overhead_s / slower,
        curves_s=work.curves_s / slower,
    )
    model = CostModel(plan["batch_size"], images_per_s, work)
    every = plan["knobs"]["eval_every"]
    steps = model.max_steps(plan["budget_s"] - elapsed_s, lambda _epochs: every, from_epoch=done_epochs)
    steps = max(done_epochs * model.steps_per_epoch + 1, steps)
    return steps if longer else min(plan["total_steps"], steps)


def _eval_every(design: Recipe, batch_size: int, epochs: int) -> int:
    return scaled_knobs(design, batch_size, epochs)["eval_every"]


def _pass_seconds(images: int, images_per_s: float) -> float:
    return images / images_per_s if images and images_per_s > 0 else 0.0


def _choose(
    design: Recipe, fitting: list[tuple[Candidate, CostModel, int]]
) -> tuple[tuple[Candidate, CostModel, int], str]:
    best = max(fitting, key=lambda row: row[1].images(row[2]))
    own = next((row for row in fitting if row[0].batch_size == design.batch_size), None)
    batch = best[0].batch_size
    if own is None:
        return best, f"batch {batch}: the most training in the budget (the recipe's {design.batch_size} fits no epoch)"
    if best is own:
        return own, f"batch {batch} (the recipe's): the most training in the budget"
    gain = best[1].images(best[2]) / own[1].images(own[2]) - 1
    if gain <= SWITCH_GAIN:
        return own, (
            f"batch {design.batch_size} (the recipe's): batch {batch} would train {gain:.1%} more images, under the "
            f"{SWITCH_GAIN:.0%} it takes to leave the batch the recipe was tuned at"
        )
    return best, f"batch {batch}: {gain:.1%} more images in the budget than the recipe's {design.batch_size}"


def _too_small(budget_s: float, design: Recipe, fitted: list[tuple[Candidate, CostModel, int]], source: str) -> str:
    costs = [(m.seconds(m.steps_per_epoch, _eval_every(design, c.batch_size, 1))["total_s"], c) for c, m, _ in fitted]
    minimum, candidate = min(costs, key=lambda pair: pair[0])
    images = fitted[0][1].workload.train_images
    return (
        f"{source} of {budget_s:g}s cannot fit one epoch of {images} images on this machine: one epoch with its "
        f"evaluation and saving takes {minimum:.3g}s here (batch {candidate.batch_size} at the measured "
        f"{candidate.images_per_s:.0f} img/s); the minimum budget is {math.ceil(minimum)}s (or fix the length with "
        "--epochs)"
    )


def current_total_steps(plan: dict[str, Any]) -> int:
    """A recorded plan's total steps now: as extended by --epochs on resume, as re-planned, or as planned."""
    for change in ("extended", "replanned"):
        if (plan.get(change) or {}).get("total_steps") is not None:
            return plan[change]["total_steps"]
    return plan["total_steps"]
