"""Smoke tests on the shared JPEG copy of CIFAR-10 (skipped, with the reason, where it is missing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_test_support import SHARED_CIFAR_TRAIN

from cifar_edge.runtime.contract import CIFAR10_CLASS_NAMES, Contract
from cifar_edge.runtime.images import open_image_rgb
from cifar_edge.runtime.preprocess import resize_to_contract
from cifar_edge.train.data.load import load_splits

pytestmark = pytest.mark.skipif(
    not SHARED_CIFAR_TRAIN.is_dir(), reason=f"shared CIFAR-10 JPEG copy not found at {SHARED_CIFAR_TRAIN}"
)


def test_a_few_thousand_real_images(tmp_path: Path) -> None:
    dataset = SHARED_CIFAR_TRAIN.parent  # holds train/ only: validation is carved out of it
    splits = load_splits(str(dataset), limit_per_class=300, cache_dir=tmp_path, show_progress=False)
    assert splits.class_names == CIFAR10_CLASS_NAMES
    assert splits.train_images.shape == (2700, 32, 32, 3) and splits.val_images.shape == (300, 32, 32, 3)
    assert np.bincount(splits.val_labels).tolist() == [30] * 10
    assert splits.description["skipped"]["count"] == 0
    assert splits.description["layout"] == "train/"
    # Real photos, not blank rows: CIFAR-10's mean pixel is about 121.
    assert 100 < splits.train_images.mean() < 140 and splits.train_images.std() > 40
    # Pixels are the runtime's decode of the file.
    first_cat = resize_to_contract(open_image_rgb(SHARED_CIFAR_TRAIN / "cat" / "0000.jpg"), Contract())
    cat = CIFAR10_CLASS_NAMES.index("cat")
    candidates = np.concatenate(
        [splits.train_images[splits.train_labels == cat], splits.val_images[splits.val_labels == cat]]
    )
    assert (candidates == first_cat).all(axis=(1, 2, 3)).sum() == 1

    again = load_splits(str(dataset), limit_per_class=300, cache_dir=tmp_path, show_progress=False)
    assert again.description["cache"]["status"] == "hit"
    assert np.array_equal(again.val_images, splits.val_images)


@pytest.mark.slow
def test_all_50000_images_then_from_cache(tmp_path: Path) -> None:
    first = load_splits(str(SHARED_CIFAR_TRAIN.parent), cache_dir=tmp_path, show_progress=False)
    assert first.description["counts"] == {"train": 45000, "val": 5000}
    second = load_splits(str(SHARED_CIFAR_TRAIN.parent), cache_dir=tmp_path, show_progress=False)
    assert second.description["cache"]["status"] == "hit"
    assert np.array_equal(first.train_images, second.train_images)
    assert np.array_equal(first.val_labels, second.val_labels)
