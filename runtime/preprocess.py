"""Pixels to model input, following a Contract. Pillow + numpy only (no torch).

Matches torchvision's ``Resize((H, W)) > ToTensor > Normalize(mean, std)`` on a PIL RGB image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from cifar_edge.runtime.contract import Contract

_PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def resize_to_contract(image: Image.Image, contract: Contract) -> np.ndarray:
    """RGB PIL image -> uint8 array (H, W, 3) of the contract's image size."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {image.mode}")
    height, width = contract.image_size
    if image.size != (width, height):
        image = image.resize((width, height), _PIL_FILTERS[contract.resize_method])
    return np.asarray(image, dtype=np.uint8)


def normalize_batch(images: np.ndarray, contract: Contract) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W): ``(pixel / 255 - mean) / std`` per channel."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    scaled = images.astype(np.float32) / np.float32(255.0)
    mean = np.asarray(contract.mean, dtype=np.float32)
    std = np.asarray(contract.std, dtype=np.float32)
    normalized = (scaled - mean) / std
    return np.ascontiguousarray(normalized.transpose(0, 3, 1, 2))
