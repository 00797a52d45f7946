"""Recipes supply defaults; explicit options and --set overrides win; bad values are one-line ValueErrors."""

from __future__ import annotations

import pytest

from cifar_edge.train.config import TrainConfig
from cifar_edge.train.recipes import (
    RECIPES,
    Recipe,
    apply_overrides,
    epochs_within_budget,
    get_recipe,
    resolve_recipe,
)


def test_seed_recipe_is_the_tutorial() -> None:
    recipe = get_recipe("seed")
    assert (recipe.model, recipe.model_kwargs, recipe.normalization) == ("seed", {}, "none")
    assert (recipe.lr, recipe.batch_size, recipe.epochs, recipe.log_every) == (0.05, 64, 10, 100)
    assert (recipe.momentum, recipe.weight_decay, recipe.label_smoothing) == (0.0, 0.0, 0.0)
    assert (recipe.crop_padding, recipe.flip, recipe.schedule) == (0, False, "constant")


def test_default_recipe_is_the_tuned_airbench_style_recipe() -> None:
    recipe = get_recipe("default")
    assert recipe.model == "airnet" and recipe.model_kwargs == {"widths": [32, 128, 128]}
    assert (recipe.batch_size, recipe.epochs, recipe.label_smoothing) == (512, 18, 0.2)
    assert (recipe.optimizer, recipe.muon_lr, recipe.muon_momentum) == ("muon", 0.08, 0.85)
    assert recipe.nesterov and (recipe.momentum, recipe.lr, recipe.weight_decay) == (0.85, 0.75, 0.00133)
    assert recipe.bias_lr_scale == 64 and recipe.decay_norm
    assert (recipe.schedule, recipe.lr_start_factor, recipe.lr_peak_fraction, recipe.lr_end_factor) == (
        "triangle",
        0.2,
        0.23,
        0.07,
    )
    assert (recipe.crop_padding, recipe.flip, recipe.flip_mode) == (2, True, "alternating")
    assert (recipe.whitening_images, recipe.whiten_bias_epochs) == (5000, 3)
    assert (recipe.lookahead_every, recipe.lookahead_decay, recipe.lookahead_power) == (5, 0.95, 3.0)
    assert recipe.average_start_epoch == 3 and recipe.ema_decay == 0.0
    assert recipe.tta == "flip_shift" and recipe.eval_every == 3
    assert recipe.max_train_images == 18 * 45_000  # 18 epochs of 45,000 images, 16 of CIFAR-10's 50,000
    assert TrainConfig().recipe == "default"


def test_airbench_recipe_is_the_default_method_at_full_width_for_batch_1024() -> None:
    default, airbench = get_recipe("default"), get_recipe("airbench")
    assert airbench.model_kwargs == {"widths": [64, 256, 256]} and airbench.batch_size == 1024
    assert (airbench.lr, airbench.momentum, airbench.weight_decay, airbench.bias_lr_scale) == (1.5, 0.85, 0.00133, 64)
    assert airbench.tta == "flip_shift" and airbench.epochs == 10 and airbench.optimizer == "sgd"
    # The same shrink per image: twice the batch, twice the lr x wd per step.
    assert airbench.lr * airbench.weight_decay / 1024 == pytest.approx(default.lr * default.weight_decay / 512)
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
    assert apply_overrides(recipe, {"warmup_epochs": 2}).warmup_epochs == 2.0  # ints stand for floats
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
    with pytest.raises(ValueError, match="choose one weight average"):
        apply_overrides(recipe, {"ema_decay": 0.99})
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
    with pytest.raises(ValueError, match="does not know: decay_norm_and_bias"):
        Recipe.from_dict({**recipe.to_dict(), "decay_norm_and_bias": True})


def test_epochs_shrink_to_the_whole_epochs_that_fit_the_image_budget() -> None:
    default = get_recipe("default")
    assert epochs_within_budget(default, 45_000).epochs == 18  # the validated setting, unchanged
    assert epochs_within_budget(default, 50_000).epochs == 16  # CIFAR-10 with its test split: 800,000 images
    assert epochs_within_budget(default, 40_000).epochs == 18  # a smaller set never gets more epochs
    assert epochs_within_budget(default, 5_000_000).epochs == 1  # at least one epoch
    assert epochs_within_budget(get_recipe("airbench"), 500_000).epochs == 10  # no budget on the GPU recipe
    with pytest.raises(ValueError, match="max_train_images must be >= 0"):
        apply_overrides(default, {"max_train_images": -1})
