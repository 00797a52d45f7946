"""Seeded, stratified train/validation split: deterministic, proportional per class, disjoint, reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cifar_edge.train.data.load import DataError, load_splits
from cifar_edge.train.data.split import first_per_class, stratified_split


def uneven_labels() -> np.ndarray:
    # 4 classes of 100, 37, 5 and 1 samples, interleaved so class members are not contiguous.
    labels = np.concatenate([np.full(100, 0), np.full(37, 1), np.full(5, 2), np.full(1, 3)])
    return np.random.default_rng(7).permutation(labels)


def test_split_is_stratified_disjoint_and_complete() -> None:
    labels = uneven_labels()
    train, val = stratified_split(labels, 4, val_fraction=0.2, seed=3)
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    # round(n * 0.2) per class, but a class always keeps one training sample.
    assert np.bincount(labels[val], minlength=4).tolist() == [20, 7, 1, 0]
    assert np.bincount(labels[train], minlength=4).tolist() == [80, 30, 4, 1]


def test_split_depends_only_on_seed() -> None:
    labels = uneven_labels()
    first = stratified_split(labels, 4, 0.2, seed=3)
    again = stratified_split(labels.copy(), 4, 0.2, seed=3)
    other = stratified_split(labels, 4, 0.2, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[1], other[1])


def test_split_is_stable_across_numpy_releases() -> None:
    # Pinned once: the permutation comes from PCG64's raw stream, which NumPy guarantees never changes. If this fails,
    # old runs' validation sets can no longer be rebuilt by the export tool.
    _, val = stratified_split(np.zeros(20, dtype=np.int64), 1, 0.25, seed=0)
    assert val.tolist() == PINNED_VAL_SEED0


PINNED_VAL_SEED0 = [2, 3, 11, 13, 15]


def test_zero_fraction_gives_empty_validation() -> None:
    train, val = stratified_split(uneven_labels(), 4, 0.0, seed=0)
    assert val.size == 0 and train.size == 143


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_bad_fraction_is_a_data_error(fraction: float) -> None:
    with pytest.raises(DataError, match="val_fraction"):
        stratified_split(uneven_labels(), 4, fraction, seed=0)


def test_first_per_class_keeps_file_order() -> None:
    labels = np.array([1, 0, 1, 1, 0, 2, 0, 0])
    assert first_per_class(labels, 2).tolist() == [0, 1, 2, 4, 5]


def test_load_splits_same_arguments_give_identical_arrays(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    arguments = dict(data=str(tiny_dataset_dir), val_fraction=0.25, seed=5, cache_dir=tmp_path, show_progress=False)
    first = load_splits(**arguments)
    again = load_splits(**arguments)
    for name in ("train_images", "train_labels", "val_images", "val_labels"):
        a, b = getattr(first, name), getattr(again, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert first.train_images.dtype == np.uint8 and first.train_labels.dtype == np.int64
    # 24 images per class, a quarter of each class goes to validation.
    assert np.bincount(first.val_labels).tolist() == [6, 6, 6]
    assert np.bincount(first.train_labels).tolist() == [18, 18, 18]
    how_val = {"method": "stratified_fraction", "fraction": 0.25, "seed": 5, "stratified": True}
    assert first.description["val"] == how_val
    # Disjoint: no validation image is also a training image (the tiny images are random noise, hence unique).
    train_rows = {image.tobytes() for image in first.train_images}
    assert not any(image.tobytes() in train_rows for image in first.val_images)


def test_spec_in_description_rebuilds_the_same_split(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    import json

    splits = load_splits(str(tiny_dataset_dir), val_fraction=0.25, seed=1, cache_dir=tmp_path, show_progress=False)
    spec = json.loads(json.dumps(splits.description["spec"]))  # what run.json stores and export reads back
    assert spec["data"] == str(tiny_dataset_dir) and spec["cache_dir"] == str(tmp_path)
    rebuilt = load_splits(**spec, show_progress=False)
    assert rebuilt.description["cache"]["status"] == "hit"
    assert np.array_equal(rebuilt.val_images, splits.val_images)
    assert np.array_equal(rebuilt.val_labels, splits.val_labels)
    assert np.array_equal(rebuilt.train_images, splits.train_images)


def test_changing_the_seed_reuses_the_cache(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    first = load_splits(str(tiny_dataset_dir), seed=0, val_fraction=0.25, cache_dir=tmp_path, show_progress=False)
    second = load_splits(str(tiny_dataset_dir), seed=1, val_fraction=0.5, cache_dir=tmp_path, show_progress=False)
    assert second.description["cache"]["status"] == "hit"
    assert second.description["cache"]["key"] == first.description["cache"]["key"]
    assert not np.array_equal(first.val_images, second.val_images[: len(first.val_images)])
    assert second.description["counts"] == {"train": 36, "val": 36}


def test_relative_data_path_is_recorded_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from data_test_support import write_image_folder

    write_image_folder(tmp_path / "mine" / "train", per_class=2)
    monkeypatch.chdir(tmp_path)
    splits = load_splits("mine", cache_dir="cache", show_progress=False)
    assert splits.description["spec"]["data"] == str(tmp_path / "mine")
    assert splits.description["spec"]["cache_dir"] == str(tmp_path / "cache")
