"""A session's time budget: whether one applies, the measurement before the clock, and the plan it gives: the batch
size and model size it trains and the knobs it scales.

Budget-aware linear decay (Li, Yumer and Ramanan, "Budgeted Training", ICLR 2020): a schedule that decays to its end
at the budget beats a longer one cut off there. The triangle schedule is defined in fractions of the run's steps
(optim.py), so planning the steps stretches it to the budget; the knobs a recipe counts in epochs are scaled by one
rule (:func:`scaled_knobs`), which mid-run re-plans (clock.py) apply again.

The size menu: below a few epochs a smaller net, which fits more epochs in the same minutes, is as accurate and
cheaper per image (docs/training.md, 'The size menu'), so a budget too short for the recipe's model trains the
recipe's smaller one instead; only when nobody chose the model (--model, --model-kwargs and --set model... are kept).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifar_edge.train.budget.plan import (
    EPOCH_KNOBS,
    FINAL_PASSES,
    BudgetTooSmall,
    Candidate,
    CostModel,
    Plan,
    SizeChoice,
    Workload,
    epoch_knobs,
)
from cifar_edge.train.budget.probe import ProbeInputs, probe
from cifar_edge.train.config import TrainConfig
from cifar_edge.train.distributed import DistributedContext, broadcast_object
from cifar_edge.train.recipes import Recipe
from cifar_edge.train.reporting import Reporter

# Another batch size replaces the recipe's own only when it fits this much more training (in images) into the
# budget: the recipe was tuned at its own batch, and other batches scored lower at equal epochs (docs/training.md).
SWITCH_GAIN = 0.10

# (recipe, its model) -> the plan for it, None without a budget; BudgetTooSmall when not one epoch fits.
Planner = Callable[[Recipe, nn.Module], Plan | None]


@dataclass
class Sized:
    """A model built for a recipe, and its run.json architecture."""

    model: nn.Module
    architecture: dict[str, Any]


def budget_of(config: TrainConfig, recipe: Recipe, device: torch.device) -> tuple[float, str]:
    """(seconds, what set them) of the run's budget; (0, "") when its length is fixed instead.

    --budget applies anywhere. The recipe's cpu_budget_s applies on a CPU only (a GPU keeps the fixed schedule),
    and not when the length is given (--epochs, --set epochs).
    """
    if config.budget_s is not None:
        return config.budget_s, "--budget"
    fixed = config.epochs is not None or "epochs" in config.recipe_overrides
    if device.type != "cpu" or fixed or not recipe.cpu_budget_s:
        return 0.0, ""
    return recipe.cpu_budget_s, f"the {recipe.name} recipe's CPU budget (cpu_budget_s)"


def candidate_recipes(config: TrainConfig, recipe: Recipe, train_images: int, world_size: int) -> list[Recipe]:
    """The recipe at each batch size the plan times: its own first, then those of budget_batch_sizes that split
    evenly over the processes and are no larger than the training set. A batch size given as an option is kept."""
    if config.batch_size is not None or "batch_size" in config.recipe_overrides:
        return [recipe]
    others = [size for size in recipe.budget_batch_sizes if size % world_size == 0 and size <= train_images]
    return [replace(recipe, batch_size=size) for size in dict.fromkeys([recipe.batch_size, *others])]


@dataclass(frozen=True)
class SessionBudget:
    """What planning a fresh session measures on and reports to, besides the recipe and its model."""

    config: TrainConfig
    inputs: ProbeInputs
    distributed: DistributedContext
    clock: Callable[[], float]  # what the measurement is timed by
    reporter: Reporter

    def plan(self, recipe: Recipe, model: nn.Module) -> Plan | None:
        """The plan of ``recipe`` on ``model`` for a run with a budget (None without one), measured on the
        session's data. Every rank measures (together, as they will train), rank 0's plan is the one all follow.
        BudgetTooSmall (a ValueError: exit code 2) when not one epoch fits."""
        budget_s, source = budget_of(self.config, recipe, self.inputs.device)
        if not budget_s:
            return None
        candidates = candidate_recipes(self.config, recipe, len(self.inputs.train_data), self.distributed.world_size)
        self.reporter.line(
            f"budget {budget_s:g}s ({source}): timing {len(candidates)} batch size(s) "
            f"({', '.join(str(c.batch_size) for c in candidates)}) before the clock"
        )
        started = self.clock()
        speeds, workload = probe(model, self.inputs, candidates, self.clock)
        plan, error = None, None
        try:
            plan = plan_budget(budget_s, recipe, speeds, workload, source)
            precision = "bf16" if self.inputs.precision == torch.bfloat16 else "fp32"
            plan = replace(plan, warm_up_s=round(self.clock() - started, 3), precision=precision)
        except BudgetTooSmall as too_small:
            error = str(too_small)
        agreed: tuple[Plan | None, str | None] = broadcast_object((plan, error), self.distributed)
        if agreed[1] is not None:
            raise BudgetTooSmall(agreed[1])
        return agreed[0]


def choose_size(
    config: TrainConfig, recipe: Recipe, build: Callable[[Recipe], Sized], planner: Planner
) -> tuple[Recipe, Plan | None, Sized]:
    """(planned recipe, plan, model) for ``recipe``, or for its smaller model when the recipe's fits fewer than
    ``budget_min_epochs`` epochs (or none) and the smaller fits no fewer. BudgetTooSmall when neither fits one."""
    asked = build(recipe)
    try:
        plan, refusal = planner(recipe, asked.model), None
    except BudgetTooSmall as error:
        plan, refusal = None, error
    smaller = smaller_recipe(config, recipe)
    too_short = refusal is not None or (plan is not None and plan.planned_epochs < recipe.budget_min_epochs)
    if smaller is None or not too_short:
        if refusal is not None:
            raise refusal
        return _planned(recipe, plan), plan, asked
    small = build(smaller)
    try:
        small_plan = planner(smaller, small.model)
    except BudgetTooSmall:
        if refusal is not None:
            raise  # the smaller model's minimum: the least budget that trains anything
        return _planned(recipe, plan), plan, asked
    assert small_plan is not None  # a recipe with a budget plans one
    asked_epochs = None if plan is None else plan.planned_epochs
    # A smaller net is never slower on real hardware; this guard only keeps a freak measurement from choosing it.
    if asked_epochs is not None and small_plan.planned_epochs < asked_epochs:
        return _planned(recipe, plan), plan, asked
    fits = "fits no epoch" if asked_epochs is None else f"fits {asked_epochs:g} epochs"
    small_plan = replace(
        small_plan,
        size=SizeChoice(_describe(recipe), smaller.model, asked_epochs, recipe.budget_min_epochs),
        reason=f"{smaller.model}: {_describe(recipe)} {fits}, under the {recipe.budget_min_epochs:g} it takes; "
        + small_plan.reason,
    )
    return small_plan.recipe_for(smaller), small_plan, small


def smaller_recipe(config: TrainConfig, recipe: Recipe) -> Recipe | None:
    """``recipe`` on its ``budget_smaller_model`` (other model arguments kept, widths dropped: the size fixes them),
    or None when it has none or the model was chosen."""
    chosen = config.model is not None or config.model_kwargs is not None
    if not recipe.budget_smaller_model or chosen or {"model", "model_kwargs"} & config.recipe_overrides.keys():
        return None
    kwargs = {key: value for key, value in recipe.model_kwargs.items() if key != "widths"}
    return replace(recipe, model=recipe.budget_smaller_model, model_kwargs=kwargs)


def _planned(recipe: Recipe, plan: Plan | None) -> Recipe:
    return recipe if plan is None else plan.recipe_for(recipe)


def _describe(recipe: Recipe) -> str:
    widths = recipe.model_kwargs.get("widths")
    return recipe.model + (" " + "/".join(str(width) for width in widths) if widths else "")


def existing_folder(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (a run folder is only created once training starts)."""
    path = path.expanduser().absolute()
    while not path.is_dir() and path.parent != path:
        path = path.parent
    return path


def scaled_knobs(design: Recipe, batch_size: int, epochs: int) -> dict[str, Any]:
    """The recipe fields a plan of ``epochs`` epochs at ``batch_size`` sets, from the recipe as designed.

    The knobs counted in epochs keep their share of the run (plan.epoch_knobs, the rule re-plans use too). Per-step
    knobs follow the batch as the recipes do between batch sizes: lr x batch / design batch, lookahead_every x design
    batch / batch (the same images between averaging updates). The triangle's warm-up, peak and decay and the
    lookahead ramp are fractions of the planned steps already, so they need no rule.
    """
    per_image = design.batch_size / batch_size
    lookahead_every = max(1, math.floor(design.lookahead_every * per_image + 0.5)) if design.lookahead_every else 0
    return {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": design.lr / per_image,
        **epoch_knobs(design_knobs(design), design.epochs, epochs),
        "lookahead_every": lookahead_every,
    }


def design_knobs(design: Recipe) -> dict[str, int]:
    """The recipe's own values of the knobs counted in epochs."""
    return {name: getattr(design, name) for name in EPOCH_KNOBS}


def plan_budget(
    budget_s: float, design: Recipe, candidates: list[Candidate], workload: Workload, source: str = "--budget"
) -> Plan:
    """The plan that trains the most within ``budget_s`` (see SWITCH_GAIN); BudgetTooSmall when no candidate fits
    one epoch. ``source`` names the budget in messages ("--budget", "the recipe's cpu_budget_s")."""
    workload = replace(workload, final_passes=FINAL_PASSES)
    fitted = []
    for candidate in candidates:
        model = CostModel(candidate.batch_size, candidate.images_per_s, workload)
        steps = model.max_steps(budget_s, partial(_eval_every, design, candidate.batch_size))
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
    return Plan(
        budget_s=budget_s,
        # The speed as recorded: a resumed run re-plans from the record, and a fresh one computes the same.
        candidate=replace(candidate, images_per_s=round(candidate.images_per_s, 3)),
        total_steps=steps,
        steps_per_epoch=model.steps_per_epoch,
        knobs=knobs,
        predicted=model.seconds(steps, knobs["eval_every"]),
        speeds=speeds,
        workload=workload,
        reason=reason,
        source=source,
        design_epochs=design.epochs,
        design_knobs=design_knobs(design),
    )


def _eval_every(design: Recipe, batch_size: int, epochs: int) -> int:
    every: int = scaled_knobs(design, batch_size, epochs)["eval_every"]
    return every


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
