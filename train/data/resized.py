"""CIFAR-10 at the contract's image size: the training pool ``load_splits`` splits, and the official test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.preprocess import resize_to_contract
from cifar_edge.train.data.arguments import check_arguments
from cifar_edge.train.data.cifar10 import load_cifar10_arrays, resolve_data_root
from cifar_edge.train.data.split import first_per_class


def cifar10_train_pool(
    root: Path, image_size: tuple[int, int], resize_method: str, limit_per_class: int | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """CIFAR-10's training batches in ``root`` (the first ``limit_per_class`` of each class), at ``image_size``."""
    images, labels, class_names = load_cifar10_arrays(root, train=True)
    if limit_per_class is not None:
        keep = first_per_class(labels, limit_per_class)
        images, labels = images[keep], labels[keep]
    images = resize_arrays(images, Contract(class_names, image_size=image_size, resize_method=resize_method))
    return images, labels, class_names


def load_cifar10_test(
    data_root: str | Path | None = None,
    *,
    image_size: tuple[int, int] = (32, 32),
    resize_method: str = "bilinear",
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's official 10,000 test images (uint8 (N, H, W, 3)) and labels (int64), downloaded when missing."""
    image_size = check_arguments(0.0, 0, image_size, resize_method, None)
    images, labels, class_names = load_cifar10_arrays(resolve_data_root(data_root), train=False)
    return resize_arrays(images, Contract(class_names, image_size=image_size, resize_method=resize_method)), labels


def resize_arrays(images: np.ndarray, contract: Contract) -> np.ndarray:
    """CIFAR-10's native 32x32 arrays are returned as they are; other contract sizes use the runtime's resize."""
    height, width = contract.image_size
    if images.shape[1:3] == (height, width):
        return images
    out = np.empty((len(images), height, width, 3), dtype=np.uint8)
    for index, pixels in enumerate(images):
        out[index] = resize_to_contract(Image.fromarray(pixels, "RGB"), contract)
    return out
