"""Smoke test on the real CIFAR-10 JPEGs: the seed network learns something in one short epoch."""

from __future__ import annotations

from pathlib import Path

import pytest

from cifar_edge.train import TrainConfig, fit
from cifar_edge.train.data.load import load_splits


def test_seed_network_beats_chance_on_two_thousand_real_images(shared_cifar_train: Path, tmp_path: Path) -> None:
    if not shared_cifar_train.is_dir():
        pytest.skip(f"shared CIFAR-10 JPEGs not found at {shared_cifar_train}")
    splits = load_splits(
        str(shared_cifar_train.parent),
        limit_per_class=200,
        val_fraction=0.5,  # 1,000 train / 1,000 val: scoring is cheap and makes the chance margin wide
        cache_dir=tmp_path / "cache",
        show_progress=False,
    )
    assert splits.class_names[:2] == ("airplane", "automobile") and len(splits.val_labels) == 1000
    # One epoch of the tutorial's plain SGD is only ~60 steps here, too few to move off chance; the default
    # recipe's normalised inputs and Nesterov momentum make the same network learn within them.
    config = TrainConfig(
        recipe="default",
        model="seed",
        epochs=1,
        batch_size=16,
        lr=0.03,
        recipe_overrides={"schedule": "constant", "crop_padding": 0, "flip": False},
        run_dir=str(tmp_path / "run"),
        quiet=True,
    )
    result = fit(config, splits)
    # Chance is 10% (+-0.95% for 1,000 images); measured here: 26-29%.
    assert result.final_val_accuracy > 0.17, result.metrics


def _full_data_config(tmp_path: Path, **changes: object) -> TrainConfig:
    return TrainConfig(run_dir=str(tmp_path / "run"), quiet=True, **changes)  # type: ignore[arg-type]


@pytest.mark.slow
def test_default_recipe_reaches_85_percent(shared_cifar_train: Path, tmp_path: Path) -> None:
    """The issue's first target: >= 85% validation accuracy in <= 20 minutes on the 2-core CPU (the recipe's
    comment in train/recipes.py records its measured per-epoch accuracy)."""
    if not shared_cifar_train.is_dir():
        pytest.skip(f"shared CIFAR-10 JPEGs not found at {shared_cifar_train}")
    splits = load_splits(str(shared_cifar_train.parent), show_progress=False)
    result = fit(_full_data_config(tmp_path), splits)
    assert result.final_val_accuracy >= 0.85, result.metrics


@pytest.mark.slow
def test_seed_recipe_reproduces_the_tutorial(shared_cifar_train: Path, tmp_path: Path) -> None:
    """The tutorial's recipe on all 45,000 training images. Measured: best 60.4% (epoch 5); plain SGD at lr 0.05
    makes the validation accuracy swing by +-6 points from epoch to epoch, so the best epoch is what is checked."""
    if not shared_cifar_train.is_dir():
        pytest.skip(f"shared CIFAR-10 JPEGs not found at {shared_cifar_train}")
    splits = load_splits(str(shared_cifar_train.parent), show_progress=False)
    result = fit(_full_data_config(tmp_path, recipe="seed", model="seed"), splits)
    assert result.best_val_accuracy >= 0.55, result.metrics
