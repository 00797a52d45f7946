"""Decode image files from the wild into RGB Pillow images, safely.

FIRST DRAFT (foundation): the runtime issue hardens this (EXIF orientation, every Pillow mode, animated images,
decompression bombs as errors, truncated/empty/non-image files). Keep the public names and signatures.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError


class ImageDecodeError(ValueError):
    """An input could not be turned into an RGB image; ``str()`` is one line naming the file and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def open_image_rgb(path: str | os.PathLike[str], background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Open ``path`` and return a fully decoded RGB image, or raise ImageDecodeError."""
    source = str(path)
    try:
        with Image.open(Path(path)) as image:
            image.load()
            return to_rgb(image, background)
    except FileNotFoundError:
        raise ImageDecodeError(source, "file not found") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(source, "not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError(source, f"cannot decode image ({error})") from None


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any Pillow mode to RGB; transparent pixels are composited on ``background``."""
    if image.mode == "RGB":
        return image.copy()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")
