"""ImageFolder trees: layouts, held-out folders, class discovery, unreadable and unusual images."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from data_test_support import TINY_CLASSES, write_image_folder
from PIL import Image

from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.images import open_image_rgb
from cifar_edge.runtime.preprocess import resize_to_contract
from cifar_edge.train.data.load import DataError, Splits, load_splits


def load(path: Path, cache: Path, **kwargs: Any) -> Splits:
    return load_splits(str(path), cache_dir=cache, show_progress=False, **kwargs)


def assert_one_line(error: pytest.ExceptionInfo[DataError]) -> str:
    text = str(error.value)
    assert "\n" not in text and text
    return text


def test_held_out_val_folder_is_the_validation_split(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "data" / "train", per_class=6, seed=1)
    write_image_folder(tmp_path / "data" / "val", per_class=2, seed=2)
    splits = load(tmp_path / "data", tmp_path / "cache", val_fraction=0.5)
    assert splits.class_names == ("blue", "green", "red")  # sorted folder names, as torchvision's ImageFolder
    assert len(splits.train_labels) == 18 and len(splits.val_labels) == 6  # val_fraction is ignored
    assert splits.description["val"]["method"] == "held_out_folder"
    assert splits.description["val"]["folder"] == "val/"
    assert splits.description["layout"] == "train/ + val/"
    expected = resize_to_contract(open_image_rgb(tmp_path / "data" / "val" / "blue" / "0001.png"), Contract())
    assert np.array_equal(splits.val_images[1], expected) and splits.val_labels[1] == 0


def test_test_folder_is_used_when_there_is_no_val_folder(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", per_class=4, seed=1)
    write_image_folder(tmp_path / "test", per_class=3, seed=2)
    splits = load(tmp_path, tmp_path / "cache")
    assert splits.description["val"]["folder"] == "test/"
    assert np.bincount(splits.val_labels).tolist() == [3, 3, 3]


def test_val_folder_is_preferred_over_test_folder(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", per_class=4, seed=1)
    write_image_folder(tmp_path / "val", per_class=1, seed=2)
    write_image_folder(tmp_path / "test", per_class=3, seed=3)
    splits = load(tmp_path, tmp_path / "cache")
    assert splits.description["val"]["folder"] == "val/"
    assert len(splits.val_labels) == 3
    assert splits.description["unused_folders"] == ["test/"]


def test_held_out_folder_may_lack_classes_but_not_add_them(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", per_class=3)
    write_image_folder(tmp_path / "val", per_class=1)
    (tmp_path / "val" / "red").rename(tmp_path / "val" / "purple")
    with pytest.raises(DataError) as error:
        load(tmp_path, tmp_path / "cache")
    assert "purple" in assert_one_line(error)


def test_flat_class_folders_without_train_folder(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "pictures", per_class=10)
    splits = load(tmp_path / "pictures", tmp_path / "cache", val_fraction=0.2)
    assert splits.description["layout"] == "<class>/"
    assert np.bincount(splits.val_labels).tolist() == [2, 2, 2]


def test_any_number_of_classes_sorted_by_folder_name(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    names = ["zebra", "ant", "Moose", "bee", "cow"]
    for name in names:
        (tmp_path / "train" / name).mkdir(parents=True)
        for n in range(2):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "train" / name / f"{n}.png")
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes
    splits = load(tmp_path, tmp_path / "cache", val_fraction=0.5)
    assert splits.class_names == tuple(sorted(names))
    assert np.bincount(splits.val_labels, minlength=5).tolist() == [1] * 5


def test_ambiguous_flat_layout_is_a_data_error(tmp_path: Path) -> None:
    write_image_folder(tmp_path, per_class=2)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a class")
    with pytest.raises(DataError) as error:
        load(tmp_path, tmp_path / "cache")
    text = assert_one_line(error)
    assert "notes" in text and "train/" in text


def test_val_folder_without_train_folder_is_a_data_error(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "val", per_class=2)
    with pytest.raises(DataError) as error:
        load(tmp_path, tmp_path / "cache")
    assert "no train/" in assert_one_line(error)


@pytest.mark.parametrize("class_count", [0, 1])
def test_fewer_than_two_classes_is_a_data_error(tmp_path: Path, class_count: int) -> None:
    (tmp_path / "train").mkdir()
    for name in TINY_CLASSES[:class_count]:
        (tmp_path / "train" / name).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / "train" / name / "a.png")
    with pytest.raises(DataError) as error:
        load(tmp_path, tmp_path / "cache")
    assert f"found {class_count} class folder" in assert_one_line(error)


def test_empty_class_folder_is_a_data_error(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", per_class=2)
    (tmp_path / "train" / "yellow").mkdir()
    (tmp_path / "train" / "yellow" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError) as error:
        load(tmp_path, tmp_path / "cache")
    assert "yellow" in assert_one_line(error)


@pytest.mark.parametrize("problem", ["missing", "file"])
def test_bad_data_path_is_a_data_error(tmp_path: Path, problem: str) -> None:
    path = tmp_path / "data.zip"
    if problem == "file":
        path.write_bytes(b"PK")
    with pytest.raises(DataError) as error:
        load(path, tmp_path / "cache")
    assert str(path) in assert_one_line(error)


def test_unreadable_images_are_skipped_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_image_folder(tmp_path / "train", per_class=5)
    good_jpeg = tmp_path / "good.jpg"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(good_jpeg, quality=90)
    bad = {
        "red/truncated.jpg": good_jpeg.read_bytes()[:200],
        "green/empty.jpg": b"",
        "blue/text.jpg": b"this is not an image\n",
    }
    for relative, content in bad.items():
        (tmp_path / "train" / relative).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="cifar_edge.train.data.load"):
        splits = load(tmp_path, tmp_path / "cache", val_fraction=0.2)
    assert len(splits.train_labels) + len(splits.val_labels) == 15
    skipped = splits.description["skipped"]
    assert skipped["count"] == 3
    assert sorted(Path(item["path"]).name for item in skipped["first"]) == ["empty.jpg", "text.jpg", "truncated.jpg"]
    assert all(item["reason"] for item in skipped["first"])
    warning = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warning) == 1 and "skipped 3 unreadable image(s) of 18" in warning[0] and "\n" not in warning[0]
    assert "truncated.jpg" in warning[0]
    # Reported again from the cache, without decoding: the skip list is part of the cached data.
    again = load(tmp_path, tmp_path / "cache", val_fraction=0.2)
    assert again.description["cache"]["status"] == "hit" and again.description["skipped"] == skipped


def test_class_with_only_unreadable_images_is_a_data_error(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", per_class=2)
    for path in (tmp_path / "train" / "green").iterdir():
        path.write_bytes(b"broken")
    with pytest.raises(DataError) as error:
        load(tmp_path, tmp_path / "cache")
    text = assert_one_line(error)
    assert "green" in text and "0000.png" in text


def write_odd_images(folder: Path) -> list[Path]:
    """Images of unusual sizes and modes, one per class folder entry."""
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    rgba = rng.integers(0, 256, (20, 50, 4), dtype=np.uint8)  # 50 wide, 20 high
    rgba[:, :10, 3] = 0  # a transparent band, composited on the contract's background
    grey = rng.integers(0, 256, (33, 31), dtype=np.uint8)
    images = {
        "rgba.png": Image.fromarray(rgba, "RGBA"),
        "grey.png": Image.fromarray(grey, "L"),
        "palette.png": Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).convert("P"),
        "palette_transparent.gif": Image.fromarray(grey).convert("P"),
        "cmyk.jpg": Image.fromarray(rng.integers(0, 256, (16, 64, 3), dtype=np.uint8)).convert("CMYK"),
        "big.jpg": Image.fromarray(rng.integers(0, 256, (300, 451, 3), dtype=np.uint8)),
    }
    paths = []
    for name, image in images.items():
        path = folder / name
        if name == "palette_transparent.gif":
            image.save(path, transparency=0)
            path = path.rename(path.with_suffix(".png"))  # .gif is not an ImageFolder extension
        else:
            image.save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize(("image_size", "resize_method"), [((32, 32), "bilinear"), ((24, 40), "bicubic")])
def test_odd_sizes_and_modes_match_the_runtime_preprocessing(
    tmp_path: Path, image_size: tuple[int, int], resize_method: str
) -> None:
    odd = write_odd_images(tmp_path / "train" / "odd")
    write_image_folder(tmp_path / "train", per_class=1)
    splits = load(tmp_path, tmp_path / "cache", val_fraction=0.0, image_size=image_size, resize_method=resize_method)
    assert splits.description["skipped"]["count"] == 0
    assert splits.train_images.shape == (len(odd) + 3, *image_size, 3)
    assert splits.val_images.shape == (0, *image_size, 3)
    contract = Contract(splits.class_names, image_size=image_size, resize_method=resize_method)
    odd_label = splits.class_names.index("odd")
    loaded = splits.train_images[splits.train_labels == odd_label]
    for row, path in zip(loaded, sorted(odd), strict=True):
        expected = resize_to_contract(open_image_rgb(path, contract.alpha_background), contract)
        assert np.array_equal(row, expected), path.name


def test_pool_decoding_gives_the_same_arrays(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", per_class=30, size=(40, 36))
    (tmp_path / "train" / "red" / "broken.png").write_bytes(b"broken")
    in_process = load(tmp_path, tmp_path / "cache_a", workers=1)
    in_pool = load(tmp_path, tmp_path / "cache_b", workers=2)
    for name in ("train_images", "train_labels", "val_images", "val_labels"):
        assert np.array_equal(getattr(in_process, name), getattr(in_pool, name)), name
    assert in_pool.description["skipped"] == in_process.description["skipped"]


def test_limit_per_class_takes_the_first_files(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", per_class=8)
    splits = load(tmp_path, tmp_path / "cache", limit_per_class=3, val_fraction=0.0)
    assert np.bincount(splits.train_labels).tolist() == [3, 3, 3]
    expected = resize_to_contract(open_image_rgb(tmp_path / "train" / "green" / "0002.png"), Contract())
    assert np.array_equal(splits.train_images[5], expected)
    assert splits.description["spec"]["limit_per_class"] == 3


@pytest.mark.parametrize(
    ("argument", "value"),
    [("val_fraction", 1.0), ("seed", -1), ("image_size", (32,)), ("resize_method", "fancy"), ("limit_per_class", 0)],
)
def test_bad_arguments_are_data_errors(tiny_dataset_dir: Path, tmp_path: Path, argument: str, value: object) -> None:
    with pytest.raises(DataError) as error:
        load(tiny_dataset_dir, tmp_path, **{argument: value})
    assert argument in assert_one_line(error)


def test_description_is_json_and_complete(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    import json

    splits = load(tiny_dataset_dir, tmp_path, val_fraction=0.25)
    description = json.loads(json.dumps(splits.description))
    assert description["source"] == str(tiny_dataset_dir) and description["root"] == str(tiny_dataset_dir)
    assert description["counts"] == {"train": 54, "val": 18}
    assert description["class_counts"]["val"] == {"red": 6, "green": 6, "blue": 6}
    assert description["skipped"] == {"count": 0, "first": []}
    assert len(description["cache"]["key"]) == 64
    assert description["image_size"] == [32, 32] and description["resize_method"] == "bilinear"
