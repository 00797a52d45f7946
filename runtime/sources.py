"""Classifier inputs other than files: naming each input for its result, and PIL images or arrays to RGB."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

from cifar_edge.runtime.images import ImageDecodeError, to_rgb

ImageInput = str | os.PathLike[str] | bytes | Image.Image | np.ndarray


def is_single_item(items: object) -> bool:
    if isinstance(items, np.ndarray):
        return items.ndim != 4
    return isinstance(items, str | os.PathLike | bytes | Image.Image)


def describe_source(item: object, position: int) -> str:
    if isinstance(item, str | os.PathLike):
        return str(item)
    if isinstance(item, Image.Image):
        filename = getattr(item, "filename", "")
        return str(filename) if filename else f"<PIL image {position}>"
    if isinstance(item, bytes):
        return f"<bytes {position}>"
    return f"<array {position}>"


def pil_to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    # An image fresh from Image.open still carries its EXIF orientation; apply it as files are handled.
    try:
        oriented = ImageOps.exif_transpose(image)
    except Exception:
        oriented = image
    try:
        return to_rgb(oriented, background)
    except Exception as error:
        source = describe_source(image, 0)
        raise ImageDecodeError(source, f"cannot convert {image.mode} image to RGB ({error})") from None


def array_to_image(array: np.ndarray, background: tuple[int, int, int]) -> Image.Image:
    if array.dtype != np.uint8:
        raise ImageDecodeError("<array>", f"expected a uint8 array, got {array.dtype} (scale it to 0..255 first)")
    if array.ndim == 2:
        return Image.fromarray(array, "L").convert("RGB")
    if array.ndim == 3 and array.shape[-1] == 3:
        return Image.fromarray(np.ascontiguousarray(array), "RGB")
    if array.ndim == 3 and array.shape[-1] == 4:
        return to_rgb(Image.fromarray(np.ascontiguousarray(array), "RGBA"), background)
    raise ImageDecodeError("<array>", f"expected (H, W, 3), (H, W, 4) or (H, W) uint8, got shape {array.shape}")
