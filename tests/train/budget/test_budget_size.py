"""The planner moves down the size menu when the recipe's own model fits too few epochs, and only then."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from test_budget_runs import FakeClock

from cifar_edge.train import TrainConfig, fit
from cifar_edge.train.budget.plan import BudgetTooSmall
from cifar_edge.train.budget.policy import smaller_recipe
from cifar_edge.train.data.load import Splits
from cifar_edge.train.recipes import AIRBENCH, DEFAULT, SEED


@pytest.fixture
def default_budget(airnet_config: TrainConfig) -> TrainConfig:
    """The default recipe as a user runs it (its own AirNet, no model chosen), at batch 18 on the tiny data."""
    return replace(airnet_config, epochs=None, batch_size=18, recipe_overrides={}, model_kwargs=None, budget_s=1.0)


def _record(result) -> dict:
    return json.loads(result.run_json.read_text())


def test_a_budget_too_short_for_the_recipes_net_trains_the_smaller_one(
    tiny_splits: Splits, default_budget: TrainConfig
) -> None:
    long = _record(
        fit(replace(default_budget, run_dir=default_budget.run_dir + "-long"), tiny_splits, clock=FakeClock())
    )
    assert "size" not in long["plan"] and long["architecture"]["kwargs"]["widths"] == [32, 128, 128]
    assert long["plan"]["planned_epochs"] >= DEFAULT.budget_min_epochs
    # A budget a few epochs long: the recipe's net would fit fewer than its minimum, the smaller at least as many.
    short = _record(fit(replace(default_budget, budget_s=0.15), tiny_splits, clock=FakeClock()))
    size = short["plan"]["size"]
    assert size == {
        "asked": "airnet 32/128/128",
        "trained": "airnet-s",
        "asked_planned_epochs": size["asked_planned_epochs"],
        "min_epochs": DEFAULT.budget_min_epochs,
    }
    assert size["asked_planned_epochs"] < DEFAULT.budget_min_epochs
    assert short["plan"]["reason"].startswith("airnet-s: airnet 32/128/128 fits")
    assert short["architecture"]["name"] == "airnet-s" and short["recipe"]["model"] == "airnet-s"


def test_a_chosen_model_is_never_switched(tiny_splits: Splits, default_budget: TrainConfig) -> None:
    record = _record(fit(replace(default_budget, budget_s=0.15, model="airnet-m"), tiny_splits, clock=FakeClock()))
    assert "size" not in record["plan"] and record["architecture"]["name"] == "airnet-m"
    assert record["plan"]["planned_epochs"] < DEFAULT.budget_min_epochs


def test_a_budget_too_short_for_every_size_names_the_minimum(tiny_splits: Splits, default_budget: TrainConfig) -> None:
    with pytest.raises(BudgetTooSmall, match=r"the minimum budget is \d+s"):
        fit(replace(default_budget, budget_s=0.5), tiny_splits, clock=FakeClock(tick=1.0))


def test_only_an_unchosen_model_with_a_smaller_size_moves_down() -> None:
    plain = TrainConfig(recipe="default")
    assert smaller_recipe(plain, DEFAULT) == replace(DEFAULT, model="airnet-s", model_kwargs={})
    assert smaller_recipe(replace(plain, model="airnet"), DEFAULT) is None
    assert smaller_recipe(replace(plain, model_kwargs={"widths": [8, 16, 16]}), DEFAULT) is None
    assert smaller_recipe(replace(plain, recipe_overrides={"model_kwargs": {}}), DEFAULT) is None
    assert smaller_recipe(plain, AIRBENCH) == replace(AIRBENCH, model="airnet-m", model_kwargs={})
    assert smaller_recipe(plain, SEED) is None  # a recipe without a smaller model keeps its own
