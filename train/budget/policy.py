"""A session's time budget: whether one applies, the measurement before the clock, and the plan it gives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from cifar_edge.train.budget.plan import BudgetTooSmall, plan_budget, planned_recipe
from cifar_edge.train.budget.probe import ProbeInputs, probe
from cifar_edge.train.config import LENGTH_FIELDS, TrainConfig
from cifar_edge.train.distributed import DistributedContext, broadcast_object
from cifar_edge.train.recipes import Recipe
from cifar_edge.train.reporting import Reporter


def budget_of(config: TrainConfig, recipe: Recipe, device: torch.device) -> tuple[float, str]:
    """(seconds, what set them) of the run's budget; (0, "") when its length is fixed instead.

    --budget applies anywhere. The recipe's cpu_budget_s applies on a CPU only (a GPU keeps the fixed schedule),
    and not when the length is given (--epochs, --set epochs, --set max_train_images) or the recipe caps its images.
    """
    if config.budget_s is not None:
        return config.budget_s, "--budget"
    fixed = config.epochs is not None or any(name in config.recipe_overrides for name in LENGTH_FIELDS)
    if device.type != "cpu" or fixed or recipe.max_train_images or not recipe.cpu_budget_s:
        return 0.0, ""
    return recipe.cpu_budget_s, f"the {recipe.name} recipe's CPU budget (cpu_budget_s)"


def candidate_recipes(config: TrainConfig, recipe: Recipe, train_images: int, world_size: int) -> list[Recipe]:
    """The recipe at each batch size the plan times: its own first, then those of budget_batch_sizes that split
    evenly over the processes and are no larger than the training set. A batch size given as an option is kept."""
    if config.batch_size is not None or "batch_size" in config.recipe_overrides:
        return [recipe]
    others = [size for size in recipe.budget_batch_sizes if size % world_size == 0 and size <= train_images]
    return [replace(recipe, batch_size=size) for size in dict.fromkeys([recipe.batch_size, *others])]


def plan_session(
    config: TrainConfig,
    recipe: Recipe,
    inputs: ProbeInputs,
    distributed: DistributedContext,
    clock: Callable[[], float],
    reporter: Reporter,
) -> tuple[Recipe, dict[str, Any] | None]:
    """(the recipe as planned, the plan's record) for a fresh run with a budget; (recipe, None) without one.

    Every rank measures (together, as they will train), rank 0's plan is the one all follow. BudgetTooSmall (a
    ValueError: exit code 2) when not one epoch fits.
    """
    budget_s, source = budget_of(config, recipe, inputs.device)
    if not budget_s:
        return recipe, None
    candidates = candidate_recipes(config, recipe, len(inputs.train_data), distributed.world_size)
    reporter.line(
        f"budget {budget_s:g}s ({source}): timing {len(candidates)} batch size(s) "
        f"({', '.join(str(c.batch_size) for c in candidates)}) before the clock"
    )
    started = clock()
    speeds, workload = probe(inputs, candidates, clock)
    record, error = None, None
    try:
        plan = plan_budget(budget_s, recipe, speeds, workload, source)
        extra = {
            "source": source,
            "warm_up_s": round(clock() - started, 3),
            "precision": "bf16" if inputs.precision == torch.bfloat16 else "fp32",
            "design_epochs": recipe.epochs,
        }
        record = replace(plan, extra=extra).record()
    except BudgetTooSmall as too_small:
        error = str(too_small)
    record, error = broadcast_object((record, error), distributed)
    if error is not None:
        raise BudgetTooSmall(error)
    return planned_recipe(recipe, record["knobs"]), record


def plan_summary(plan: dict[str, Any]) -> str:
    """The plan in one phrase for the progress header."""
    replanned = plan.get("replanned")
    steps = f"{plan['total_steps']} steps" if not replanned else f"{replanned['total_steps']} steps (re-planned)"
    return (
        f"budget {plan['budget_s']:g}s: {steps} = {plan['planned_epochs']:g} epochs at batch {plan['batch_size']}, "
        f"{plan['images_per_s']:.0f} img/s measured in a {plan['warm_up_s']:.1f}s warm-up (outside the clock)"
    )


def existing_folder(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (a run folder is only created once training starts)."""
    path = path.expanduser().absolute()
    while not path.is_dir() and path.parent != path:
        path = path.parent
    return path
