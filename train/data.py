"""Training data as uint8 arrays: CIFAR-10 through torchvision, or any ImageFolder tree.

Public entry point: :func:`load_splits`. Everything is decoded once into a content-keyed uint8 cache, so the
training loop can keep the whole dataset on its device and augment there in batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class DataError(ValueError):
    """The data cannot be loaded; ``str()`` is one line saying what was tried and what to do."""


@dataclass(frozen=True)
class Splits:
    train_images: np.ndarray  # uint8 (N, H, W, 3), RGB, already at the contract's image size
    train_labels: np.ndarray  # int64 (N,)
    val_images: np.ndarray  # uint8 (M, H, W, 3)
    val_labels: np.ndarray  # int64 (M,)
    class_names: tuple[str, ...]
    # JSON-serialisable facts for run.json: source, root, cache key, counts, skipped files, how val was made.
    description: dict[str, Any] = field(default_factory=dict)


def load_splits(
    data: str = "cifar10",
    data_root: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    image_size: tuple[int, int] = (32, 32),
    resize_method: str = "bilinear",
    cache_dir: str | Path | None = None,
    show_progress: bool = True,
) -> Splits:
    """``data`` is "cifar10" (torchvision, downloaded into ``data_root`` when missing) or an ImageFolder path."""
    raise NotImplementedError("being implemented (train data helper)")
