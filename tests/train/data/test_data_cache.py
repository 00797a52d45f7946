"""The decoded-folder cache: hit without decoding, keyed by content, damaged files rebuilt, never trusted."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from data_test_support import write_image_folder
from PIL import Image

import cifar_edge.train.data.load as data_module
from cifar_edge.train.data.load import Splits, load_splits

ARRAYS = ("train_images", "train_labels", "val_images", "val_labels")


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the images load_splits sends to the (real) decoder."""
    calls: list[int] = []
    real_decode = data_module.decode_images

    def counting_decode(paths: list[str], *args: Any, **kwargs: Any) -> Any:
        calls.append(len(paths))
        return real_decode(paths, *args, **kwargs)

    monkeypatch.setattr(data_module, "decode_images", counting_decode)
    return calls


def load(path: Path, cache: Path, **kwargs: Any) -> Splits:
    return load_splits(str(path), cache_dir=cache, show_progress=False, **kwargs)


def assert_same_arrays(a: Splits, b: Splits) -> None:
    for name in ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_second_load_is_a_cache_hit_without_decoding(tmp_path: Path, decode_calls: list[int]) -> None:
    write_image_folder(tmp_path / "data" / "train", per_class=6)
    first = load(tmp_path / "data", tmp_path / "cache")
    assert first.description["cache"]["status"] == "miss" and first.description["cache"]["saved"] is True
    assert decode_calls == [18]
    second = load(tmp_path / "data", tmp_path / "cache")
    assert second.description["cache"]["status"] == "hit"
    assert decode_calls == [18]  # nothing decoded the second time
    assert_same_arrays(first, second)
    cache_path = Path(second.description["cache"]["path"])
    assert cache_path.parent.parent == tmp_path / "cache" and cache_path.suffix == ".npz"
    with np.load(cache_path, allow_pickle=False) as archive:  # plain arrays only, no pickles
        assert archive["train_images"].dtype == np.uint8


def test_moved_dataset_still_hits(tmp_path: Path, decode_calls: list[int]) -> None:
    write_image_folder(tmp_path / "here" / "train", per_class=4)
    first = load(tmp_path / "here", tmp_path / "cache")
    shutil.move(tmp_path / "here", tmp_path / "there")
    moved = load(tmp_path / "there", tmp_path / "cache")
    assert moved.description["cache"]["status"] == "hit" and len(decode_calls) == 1
    assert moved.description["source"] == str(tmp_path / "there")
    assert_same_arrays(first, moved)


def test_changed_file_content_invalidates_the_cache(tmp_path: Path, decode_calls: list[int]) -> None:
    write_image_folder(tmp_path / "train", per_class=4)
    first = load(tmp_path, tmp_path / "cache", val_fraction=0.0)
    changed = tmp_path / "train" / "blue" / "0000.png"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(changed)
    second = load(tmp_path, tmp_path / "cache", val_fraction=0.0)
    assert second.description["cache"]["status"] == "miss"
    assert second.description["cache"]["key"] != first.description["cache"]["key"]
    assert decode_calls == [12, 12]
    assert np.all(second.train_images[0] == (1, 2, 3))  # blue/0000.png is the first file
    assert np.array_equal(second.train_images[1:], first.train_images[1:])


def test_added_file_and_other_settings_change_the_key(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", per_class=3)
    keys = {load(tmp_path, tmp_path / "cache").description["cache"]["key"]}
    keys.add(load(tmp_path, tmp_path / "cache", image_size=(16, 16)).description["cache"]["key"])
    keys.add(load(tmp_path, tmp_path / "cache", resize_method="nearest").description["cache"]["key"])
    keys.add(load(tmp_path, tmp_path / "cache", limit_per_class=2).description["cache"]["key"])
    Image.new("RGB", (32, 32)).save(tmp_path / "train" / "red" / "extra.png")
    keys.add(load(tmp_path, tmp_path / "cache").description["cache"]["key"])
    assert len(keys) == 5


def flip_middle_byte(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]), id="truncated"),
        pytest.param(flip_middle_byte, id="flipped-byte"),
        pytest.param(lambda path: path.write_bytes(b"garbage, not a zip file"), id="garbage"),
        pytest.param(lambda path: path.write_bytes(b""), id="empty"),
    ],
)
def test_damaged_cache_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, decode_calls: list[int], damage: Callable[[Path], object]
) -> None:
    write_image_folder(tmp_path / "train", per_class=8, size=(48, 48))
    first = load(tmp_path, tmp_path / "cache")
    cache_path = Path(first.description["cache"]["path"])
    damage(cache_path)
    with caplog.at_level(logging.WARNING, logger="cifar_edge.train.data.load"):
        rebuilt = load(tmp_path, tmp_path / "cache")
    assert rebuilt.description["cache"]["status"] == "rebuilt"
    assert decode_calls == [24, 24]
    assert any("damaged" in record.getMessage() for record in caplog.records)
    assert_same_arrays(first, rebuilt)
    # The rebuilt file is good again.
    assert load(tmp_path, tmp_path / "cache").description["cache"]["status"] == "hit"


def test_cache_of_other_data_under_the_same_name_is_not_trusted(tmp_path: Path, decode_calls: list[int]) -> None:
    write_image_folder(tmp_path / "a" / "train", per_class=3, seed=1)
    write_image_folder(tmp_path / "b" / "train", per_class=3, seed=2)
    first_a = load(tmp_path / "a", tmp_path / "cache")
    first_b = load(tmp_path / "b", tmp_path / "cache")
    # Put b's (valid) cache file where a's belongs.
    shutil.copy(first_b.description["cache"]["path"], first_a.description["cache"]["path"])
    again_a = load(tmp_path / "a", tmp_path / "cache")
    assert again_a.description["cache"]["status"] == "rebuilt"
    assert_same_arrays(first_a, again_a)


def test_unwritable_cache_still_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_image_folder(tmp_path / "train", per_class=3)
    blocked = tmp_path / "cache-is-a-file"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="cifar_edge.train.data.load"):
        splits = load(tmp_path, blocked)
    assert splits.description["cache"]["status"] == "miss" and splits.description["cache"]["saved"] is False
    assert len(splits.train_labels) + len(splits.val_labels) == 9
    assert any("cannot write the data cache" in record.getMessage() for record in caplog.records)
