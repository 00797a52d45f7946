"""Recipes supply defaults; explicit options and --set overrides win; bad values are one-line ValueErrors."""

from __future__ import annotations

from dataclasses import fields

import pytest

from cifar_edge.train.config import TrainConfig, apply_overrides, resolve_recipe
from cifar_edge.train.models import AIRNET_SIZES
from cifar_edge.train.optim import LrSchedule
from cifar_edge.train.recipes import RECIPES, Recipe, get_recipe


def test_seed_recipe_is_the_plain_recipe_on_its_own_model_and_unnormalised_inputs() -> None:
    """The tutorial: a Recipe with nothing but its model, inputs in [0, 1] and a loss line every few steps."""
    seed, plain = get_recipe("seed"), Recipe(name="seed", model="seed")
    differs = {f.name for f in fields(Recipe) if getattr(seed, f.name) != getattr(plain, f.name)}
    assert differs == {"normalization", "log_every", "description"}
    assert seed.normalization == "none" and seed.log_every > 0
    # ...and a plain Recipe trains plainly: constant rate, no momentum, decay, augmentation, averaging or TTA.
    assert {LrSchedule(plain.schedule, 10)(step) for step in range(10)} == {1.0}
    assert not (plain.momentum or plain.weight_decay or plain.label_smoothing or plain.crop_padding or plain.flip)
    assert not plain.lookahead_every and plain.tta == "none" and plain.optimizer == "sgd"


def test_the_default_config_trains_the_default_recipe() -> None:
    assert resolve_recipe(TrainConfig()) == get_recipe("default")


def test_airbench_is_the_default_method_at_twice_the_width_and_batch() -> None:
    default, airbench = get_recipe("default"), get_recipe("airbench")
    assert airbench.model == default.model
    assert airbench.model_kwargs["widths"] == [2 * width for width in default.model_kwargs["widths"]]
    # The size menu names the same two nets.
    assert list(AIRNET_SIZES["airnet-m"]) == default.model_kwargs["widths"]
    assert list(AIRNET_SIZES["airnet-l"]) == airbench.model_kwargs["widths"]
    # Twice the batch at twice the rate, and the same shrink per image: twice the lr x wd per step.
    assert airbench.lr / airbench.batch_size == pytest.approx(default.lr / default.batch_size)
    assert airbench.lr * airbench.weight_decay / airbench.batch_size == pytest.approx(
        default.lr * default.weight_decay / default.batch_size
    )
    same = ("schedule", "flip_mode", "lookahead_every", "average_start_epoch", "whiten_bias_epochs", "label_smoothing")
    assert all(getattr(airbench, name) == getattr(default, name) for name in same)


def test_explicit_options_override_the_recipe() -> None:
    config = TrainConfig(recipe="seed", epochs=3, batch_size=8, lr=0.1, recipe_overrides={"flip": True})
    recipe = resolve_recipe(config)
    assert (recipe.epochs, recipe.batch_size, recipe.lr, recipe.flip) == (3, 8, 0.1, True)
    assert recipe.momentum == 0.0  # untouched fields keep the recipe's value


def test_another_model_starts_from_its_own_defaults() -> None:
    assert resolve_recipe(TrainConfig(model="seed")).model_kwargs == {}
    assert resolve_recipe(TrainConfig(model="airnet")).model_kwargs == {"widths": [32, 128, 128]}
    custom = resolve_recipe(TrainConfig(model_kwargs={"widths": [8, 8, 8]}))
    assert custom.model_kwargs == {"widths": [8, 8, 8]}


def test_overrides_are_type_checked() -> None:
    recipe = RECIPES["default"]
    assert apply_overrides(recipe, {"muon_lr": 1}).muon_lr == 1.0  # ints stand for floats
    with pytest.raises(ValueError, match="unknown recipe field 'lerning_rate'"):
        apply_overrides(recipe, {"lerning_rate": 0.1})
    with pytest.raises(ValueError, match="'flip' needs a bool"):
        apply_overrides(recipe, {"flip": "yes"})
    with pytest.raises(ValueError, match="tta must be one of"):
        apply_overrides(recipe, {"tta": "mirror"})
    with pytest.raises(ValueError, match="flip_mode must be one of"):
        apply_overrides(recipe, {"flip_mode": "sometimes"})
    with pytest.raises(ValueError, match="eval_every must be >= 1"):
        apply_overrides(recipe, {"eval_every": 0})
    with pytest.raises(ValueError, match="unknown recipe field 'ema_decay'"):
        apply_overrides(recipe, {"ema_decay": 0.99})  # removed with distillation, the image cap and warmup_linear
    with pytest.raises(ValueError, match="schedule must be one of"):
        apply_overrides(recipe, {"schedule": "warmup_linear"})
    with pytest.raises(ValueError, match="unknown recipe 'fast'"):
        resolve_recipe(TrainConfig(recipe="fast"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "--epochs"),
        ({"batch_size": -1}, "--batch-size"),
        ({"lr": 0.0}, "--lr"),
        ({"val_fraction": 1.0}, "--val-fraction"),
        ({"device": "gpu"}, "--device"),
        ({"threads": 0}, "--threads"),
        ({"resume": "runs/x", "batch_size": 8}, "--batch-size cannot change"),
        ({"resume": "runs/x", "run_dir": "elsewhere"}, "--run-dir cannot change"),
    ],
)
def test_config_validation_names_the_option(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes).validate()


def test_config_round_trips_through_a_plain_dict() -> None:
    config = TrainConfig(recipe="seed", epochs=4, model_kwargs={"widths": [1, 2, 3]}, recipe_overrides={"flip": True})
    assert TrainConfig.from_dict({**config.to_dict(), "from_a_newer_version": 1}) == config
    with pytest.raises(ValueError, match="nesterov needs momentum"):
        Recipe(name="x", model="seed", nesterov=True)
    recipe = get_recipe("default")
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    with pytest.raises(ValueError, match=r"does not know \(saved by another version\?\): decay_norm_and_bias"):
        Recipe.from_dict({**recipe.to_dict(), "decay_norm_and_bias": True})
