"""Fixtures for the training tests."""

from __future__ import annotations

# --- training loop fixtures (fit, checkpoints, CLI) -------------------------------------------------------------
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_data import SHARED_CIFAR_TRAIN

from cifar_edge.train.config import TrainConfig
from cifar_edge.train.data.load import Splits


def decode_image_folder(root: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``root/<class>/*`` -> uint8 (N, H, W, 3) images, int64 labels, sorted class names (PIL + numpy only)."""
    class_names = tuple(sorted(path.name for path in root.iterdir() if path.is_dir()))
    images, labels = [], []
    for label, name in enumerate(class_names):
        for path in sorted((root / name).iterdir()):
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64), class_names


def splits_from_arrays(
    images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], val_every: int = 4
) -> Splits:
    """Every ``val_every``-th image is held out for validation."""
    held_out = np.arange(len(labels)) % val_every == 0
    return Splits(
        train_images=images[~held_out],
        train_labels=labels[~held_out],
        val_images=images[held_out],
        val_labels=labels[held_out],
        class_names=class_names,
        description={"source": "test fixture", "counts": {"train": int((~held_out).sum()), "val": int(held_out.sum())}},
    )


@pytest.fixture(scope="session")
def tiny_splits(tiny_dataset_dir: Path) -> Splits:
    """The shared tiny ImageFolder (3 colour classes x 24 images) decoded: 54 train / 18 val images."""
    return splits_from_arrays(*decode_image_folder(tiny_dataset_dir / "train"))


@pytest.fixture
def seed_config(tmp_path: Path) -> TrainConfig:
    """The tutorial recipe, shortened: 2 epochs of batch 16 on one thread, quiet, in a fresh run folder."""
    return TrainConfig(recipe="seed", epochs=2, batch_size=16, run_dir=str(tmp_path / "run"), quiet=True, threads=1)


@pytest.fixture
def airnet_config(seed_config: TrainConfig) -> TrainConfig:
    """The default recipe with a tiny AirNet, its epoch-based milestones scaled to the 2-epoch run: the whitening
    bias freezes and lookahead averaging starts after epoch 1, averaging every 2 of the 4 steps per epoch."""
    overrides = {"whiten_bias_epochs": 1, "average_start_epoch": 1, "lookahead_every": 2}
    return replace(seed_config, recipe="default", model_kwargs={"widths": [8, 16, 16]}, recipe_overrides=overrides)


@pytest.fixture(scope="session")
def shared_cifar_train() -> Path:
    return SHARED_CIFAR_TRAIN


# --- end of training loop fixtures ------------------------------------------------------------------------------
