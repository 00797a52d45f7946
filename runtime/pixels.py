"""Image files and encoded bytes to the contract's uint8 pixels: the one decoding path of runtime, eval, export and
training alike. Plain JPEGs take libjpeg-turbo's fast path (``jpeg.py``), everything else Pillow (``images.py``);
both give the same pixels."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.images import (
    decode_image_bytes,
    effective_pixel_limit,
    open_image_rgb,
    read_image_file,
)
from cifar_edge.runtime.jpeg import decode_plain_jpeg
from cifar_edge.runtime.preprocess import resize_to_contract

# Files up to this size are read whole, so a plain JPEG can take the fast path; larger ones stream through Pillow
# (reading a huge file into memory before knowing what it is would be a cheap way to exhaust a device).
WHOLE_FILE_MAX_BYTES = 64 << 20


def file_pixels(path: str | os.PathLike[str], contract: Contract, *, max_pixels: int | None = None) -> np.ndarray:
    """A file -> uint8 (H, W, 3) at the contract's size (decoded, oriented, RGB, resized); ImageDecodeError naming
    the file when it cannot be."""
    data = read_image_file(path, WHOLE_FILE_MAX_BYTES)
    if data is None:
        return resize_to_contract(open_image_rgb(path, contract.alpha_background, max_pixels=max_pixels), contract)
    return bytes_pixels(data, str(path), contract, max_pixels=max_pixels)


def bytes_pixels(data: bytes, source: str, contract: Contract, *, max_pixels: int | None = None) -> np.ndarray:
    """An encoded image in memory -> uint8 (H, W, 3) at the contract's size, as :func:`file_pixels`."""
    pixels = decode_plain_jpeg(data, source, effective_pixel_limit(max_pixels))
    if pixels is None:
        image = decode_image_bytes(data, source, contract.alpha_background, max_pixels=max_pixels)
        return resize_to_contract(image, contract)
    height, width = contract.image_size
    if pixels.shape[:2] == (height, width):
        return pixels
    return resize_to_contract(Image.fromarray(pixels, "RGB"), contract)
