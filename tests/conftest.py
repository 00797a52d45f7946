"""Fixtures shared by every test package: tiny real image files and a tiny real run folder.

Package-specific fixtures live in tests/<package>/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
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


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ImageFolder dataset ``DIR/train/<class>/*.png`` with 3 classes x 24 images of 32x32."""
    root = tmp_path_factory.mktemp("tiny_dataset")
    write_image_folder(root / "train", per_class=24)
    return root


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run folder (model.safetensors + run.json) holding a small, randomly initialised AirNet."""
    import torch

    from cifar_edge.runtime.contract import Contract
    from cifar_edge.train.models import build_model
    from cifar_edge.train.run_files import save_model_files

    torch.manual_seed(0)
    contract = Contract(class_names=TINY_CLASSES)
    kwargs = {"num_classes": len(TINY_CLASSES), "widths": [8, 16, 16]}
    model = build_model("airnet", **kwargs)
    model.init_whitening(torch.randn(16, 3, 32, 32))
    run_dir = tmp_path_factory.mktemp("tiny_run")
    save_model_files(
        run_dir,
        model,
        {
            "architecture": {"name": "airnet", "kwargs": kwargs},
            "contract": contract.to_dict(),
            "metrics": {},
        },
    )
    return run_dir
