"""Moving down the size menu: a budget too short for the recipe's model trains the recipe's smaller one instead.

Below a few epochs a smaller net, which fits more epochs in the same minutes, is as accurate and cheaper per image
(docs/training.md, 'The size menu'). The switch is the planner's only when nobody chose the model: ``--model``,
``--model-kwargs`` and ``--set model...`` are always kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from cifar_edge.train.budget.plan import BudgetTooSmall
from cifar_edge.train.config import TrainConfig
from cifar_edge.train.recipes import Recipe

# (recipe, its model) -> (the planned recipe, its plan record or None without a budget); BudgetTooSmall when not one
# epoch fits.
Planner = Callable[[Recipe, nn.Module], tuple[Recipe, dict[str, Any] | None]]


@dataclass
class Sized:
    """A model built for a recipe, and its run.json architecture."""

    model: nn.Module
    architecture: dict[str, Any]


def smaller_recipe(config: TrainConfig, recipe: Recipe) -> Recipe | None:
    """``recipe`` on its ``budget_smaller_model`` (other model arguments kept, widths dropped: the size fixes them),
    or None when it has none or the model was chosen."""
    chosen = config.model is not None or config.model_kwargs is not None
    if not recipe.budget_smaller_model or chosen or {"model", "model_kwargs"} & config.recipe_overrides.keys():
        return None
    kwargs = {key: value for key, value in recipe.model_kwargs.items() if key != "widths"}
    return replace(recipe, model=recipe.budget_smaller_model, model_kwargs=kwargs)


def plan_with_size(
    config: TrainConfig, recipe: Recipe, build: Callable[[Recipe], Sized], plan: Planner
) -> tuple[Recipe, dict[str, Any] | None, Sized]:
    """(planned recipe, plan, model) for ``recipe``, or for its smaller model when the recipe's fits fewer than
    ``budget_min_epochs`` epochs (or none) and the smaller fits no fewer. BudgetTooSmall when neither fits one."""
    asked = build(recipe)
    try:
        planned, record = plan(recipe, asked.model)
        refusal = None
    except BudgetTooSmall as error:
        planned, record, refusal = recipe, None, error
    smaller = smaller_recipe(config, recipe)
    too_short = refusal is not None or (record is not None and record["planned_epochs"] < recipe.budget_min_epochs)
    if smaller is None or not too_short:
        if refusal is not None:
            raise refusal
        return planned, record, asked
    small = build(smaller)
    try:
        small_planned, small_record = plan(smaller, small.model)
    except BudgetTooSmall:
        if refusal is not None:
            raise  # the smaller model's minimum: the least budget that trains anything
        return planned, record, asked
    assert small_record is not None  # a recipe with a budget plans one
    asked_epochs = None if record is None else record["planned_epochs"]
    # A smaller net is never slower on real hardware; this guard only keeps a freak measurement from choosing it.
    if asked_epochs is not None and small_record["planned_epochs"] < asked_epochs:
        return planned, record, asked
    small_record["size"] = {
        "asked": _describe(recipe),
        "trained": smaller.model,
        "asked_planned_epochs": asked_epochs,
        "min_epochs": recipe.budget_min_epochs,
    }
    fits = "fits no epoch" if asked_epochs is None else f"fits {asked_epochs:g} epochs"
    small_record["reason"] = (
        f"{smaller.model}: {_describe(recipe)} {fits}, under the {recipe.budget_min_epochs:g} it takes; "
        + small_record["reason"]
    )
    return small_planned, small_record, small


def _describe(recipe: Recipe) -> str:
    widths = recipe.model_kwargs.get("widths")
    return recipe.model + (" " + "/".join(str(width) for width in widths) if widths else "")
