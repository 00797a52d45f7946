"""Tiny real image data and paths to the shared data, importable by name from any test (pytest pythonpath=tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SHARED_CIFAR_TRAIN = SHARED_DATA / "cifar10-jpeg" / "train"
SHARED_CAT_PHOTO = SHARED_DATA / "photos" / "cat.png"

TINY_CLASSES = ("red", "green", "blue")


def make_class_image(class_index: int, rng: np.random.Generator, size: tuple[int, int] = (32, 32)) -> Image.Image:
    """A noisy image whose dominant colour channel is its class: learnable in a few steps."""
    height, width = size
    pixels = rng.integers(0, 90, size=(height, width, 3), dtype=np.uint8)
    pixels[..., class_index % 3] = rng.integers(150, 256, size=(height, width), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def write_image_folder(root: Path, per_class: int, seed: int = 0, size: tuple[int, int] = (32, 32)) -> Path:
    """Write ``root/<class>/<n>.png`` for the tiny classes; returns ``root``."""
    rng = np.random.default_rng(seed)
    for class_index, name in enumerate(TINY_CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            make_class_image(class_index, rng, size).save(folder / f"{n:04d}.png")
    return root
