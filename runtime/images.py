"""Decode image files from the wild into RGB Pillow images, safely.

Rules (documented in docs/runtime.md, "Image handling"):

- EXIF orientation is applied (``ImageOps.exif_transpose``); a malformed EXIF block leaves the pixels as stored.
- Every Pillow mode becomes RGB: transparency (RGBA, LA, La, PA, RGBa, palette or RGB/L with a transparent colour)
  is composited on a background (the contract's ``alpha_background``); 16-bit and 32-bit greyscale (``I;16*``,
  ``I``) are rescaled to 8 bits, never clipped; float greyscale (``F``) is scaled from [0, 1] or [0, 255];
  CMYK uses its embedded ICC profile when there is one; 1-bit, YCbCr, LAB, HSV and the rest use Pillow's converter.
- Animated and multi-frame images (GIF, APNG, WebP, TIFF, MPO) use their first frame.
- An image with more pixels than the decompression-bomb limit is an error (not Pillow's warning). The limit is
  ``max_pixels``, by default Pillow's ``Image.MAX_IMAGE_PIXELS`` (89,478,485 pixels), and never more than it.
- Truncated files, empty files, directories, special files and non-images are errors.
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay False: if some code in the process turned it on, decoding refuses
  rather than pad truncated images silently.

Every failure is an :class:`ImageDecodeError` whose ``str()`` is one line: ``<source>: <reason>``.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

DEFAULT_BACKGROUND: tuple[int, int, int] = (255, 255, 255)

# Formats whose EXIF block, when present, is always in ``image.info["exif"]`` (TIFF and MPO keep it elsewhere).
_EXIF_ONLY_IN_INFO = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "PPM"})
# Modes whose samples are wider than 8 bits and must be rescaled, not clipped, to reach 8-bit RGB.
_WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageDecodeError(ValueError):
    """An input could not be turned into an RGB image; ``str()`` is one line naming the file and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def effective_pixel_limit(max_pixels: int | None = None) -> int | None:
    """The pixel limit in force: ``max_pixels`` capped by Pillow's ``Image.MAX_IMAGE_PIXELS`` (None: no limit)."""
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if max_pixels is None:
        return pillow_limit
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    return max_pixels if pillow_limit is None else min(max_pixels, pillow_limit)


def open_image_rgb(
    path: str | os.PathLike[str],
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    *,
    max_pixels: int | None = None,
) -> Image.Image:
    """Open ``path`` and return a fully decoded RGB image (EXIF-oriented, first frame), or raise ImageDecodeError."""
    source = str(path)
    check_image_file(path)
    try:
        with open(Path(path), "rb") as handle:
            return decode_image(handle, source, background, max_pixels=max_pixels)
    except OSError as error:  # opening failed (permissions, vanished file); decoding errors are already converted
        raise ImageDecodeError(source, f"cannot read file ({error.strerror or error})") from None


def check_image_file(path: str | os.PathLike[str]) -> int:
    """The size in bytes of ``path`` if it is a non-empty regular file; ImageDecodeError naming it otherwise."""
    source = str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ImageDecodeError(source, "file not found") from None
    except OSError as error:
        raise ImageDecodeError(source, f"cannot read file ({error.strerror or error})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageDecodeError(source, "is a directory, not an image file")
    if not stat.S_ISREG(info.st_mode):
        # FIFOs and devices could block forever or never end.
        raise ImageDecodeError(source, "not a regular file")
    if info.st_size == 0:
        raise ImageDecodeError(source, "empty file (0 bytes)")
    return info.st_size


def read_image_file(path: str | os.PathLike[str], max_bytes: int) -> bytes | None:
    """The bytes of ``path`` (checked as check_image_file does), or None when it has more than ``max_bytes``;
    ImageDecodeError when they cannot be read."""
    if check_image_file(path) > max_bytes:
        return None
    try:
        with open(Path(path), "rb") as handle:
            return handle.read()
    except OSError as error:  # permissions, a file that vanished since the check
        raise ImageDecodeError(str(path), f"cannot read file ({error.strerror or error})") from None


def decode_image_bytes(
    data: bytes,
    source: str = "<bytes>",
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    *,
    max_pixels: int | None = None,
) -> Image.Image:
    """Like :func:`open_image_rgb` for an encoded image already in memory."""
    if not data:
        raise ImageDecodeError(source, "empty file (0 bytes)")
    return decode_image(io.BytesIO(data), source, background, max_pixels=max_pixels)


def decode_image(
    stream: BinaryIO,
    source: str,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    *,
    max_pixels: int | None = None,
) -> Image.Image:
    """Decode one encoded image from a binary stream into RGB; every failure is an ImageDecodeError."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ImageDecodeError(
            source,
            "refusing to decode: PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process "
            "(truncated files would be padded silently)",
        )
    limit = effective_pixel_limit(max_pixels)
    try:
        with _decompression_bomb_warnings_as_errors():
            opened = Image.open(stream)
            check_pixel_count(opened.size, limit, source)
            opened.load()  # first frame only: Image.open leaves a multi-frame file on frame 0
            check_pixel_count(opened.size, limit, source)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(source, "not an image (unrecognised or unsupported format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(source, f"too many pixels, refused as a possible decompression bomb ({error})") from None
    except MemoryError:
        raise ImageDecodeError(source, "not enough memory to decode this image") from None
    except Exception as error:
        # Pillow's decoders report corrupt data with many exception types (OSError, SyntaxError, ValueError,
        # struct.error, EOFError, IndexError, ...); for input from the wild all of them mean "cannot decode".
        raise ImageDecodeError(source, _describe_decode_failure(error)) from None
    try:
        image = _apply_exif_orientation(opened)
        if image.mode == "RGB" and "transparency" not in image.info:
            return image  # freshly decoded and ours alone: no copy needed
        return to_rgb(image, background)
    except Exception as error:
        raise ImageDecodeError(source, f"cannot convert {opened.mode} image to RGB ({_one_line(error)})") from None


def to_rgb(image: Image.Image, background: tuple[int, int, int] = DEFAULT_BACKGROUND) -> Image.Image:
    """Convert any Pillow mode to RGB; transparent pixels are composited on ``background``."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image.copy()
    if mode in _WIDE_GREY_MODES or mode == "F":
        return Image.fromarray(_grey_to_uint8(image), "L").convert("RGB")
    if mode == "La":
        image = image.convert("LA")  # Pillow converts premultiplied La only to LA
    if _has_transparency(image):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if mode == "CMYK":
        return _cmyk_to_rgb(image)
    return image.convert("RGB")


def _has_transparency(image: Image.Image) -> bool:
    # Same answer as Image.has_transparency_data (Pillow >= 10.1), spelled out for older Pillow.
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return True
    return image.mode == "P" and image.palette is not None and image.palette.mode.endswith("A")


def _grey_to_uint8(image: Image.Image) -> np.ndarray:
    """16/32-bit integer or float greyscale -> uint8, rescaled (never clipped) to the 0..255 range."""
    values = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16"):
        scaled = values / 257.0  # 65535 -> 255 exactly
    elif image.mode == "I":
        # Pillow decodes 16-bit samples (PGM, some TIFFs) into 32-bit "I"; other ranges are stretched linearly.
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        in_16_bit_range = low >= 0 and high <= 65535
        scaled = values / 257.0 if in_16_bit_range else (values - low) / max(high - low, 1.0) * 255.0
    else:  # "F": float samples, usually [0, 1] or [0, 255]
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low >= 0 and high <= 1.0:
            scaled = values * 255.0
        elif low >= 0 and high <= 255.0:
            scaled = values
        else:
            scaled = (values - low) / max(high - low, np.finfo(np.float64).tiny) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    icc_profile = image.info.get("icc_profile")
    if icc_profile:
        with contextlib.suppress(Exception):  # no littlecms, or a broken profile: fall back to Pillow's formula
            from PIL import ImageCms

            source_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            srgb = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(image, source_profile, srgb, outputMode="RGB")
            if converted is not None:
                return converted
    return image.convert("RGB")


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    if image.format in _EXIF_ONLY_IN_INFO and "exif" not in image.info:
        return image  # no EXIF block at all: skip parsing (a measurable share of decoding a small JPEG)
    # A broken EXIF block says nothing reliable about orientation; the pixels themselves decoded fine.
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(image, in_place=True)
    return image


def check_pixel_count(size: tuple[int, int], limit: int | None, source: str) -> None:
    """ImageDecodeError when an image of ``size`` (width, height) has no pixels or more than ``limit``."""
    width, height = size
    if width < 1 or height < 1:
        raise ImageDecodeError(source, f"image has no pixels ({width}x{height})")
    if limit is not None and width * height > limit:
        raise ImageDecodeError(
            source,
            f"{width}x{height} = {width * height:,} pixels exceeds the decompression-bomb limit of {limit:,} "
            "pixels (raise it with --max-pixels, or max_pixels= in Python)",
        )


def _describe_decode_failure(error: Exception) -> str:
    message = _one_line(error)
    if "truncated" in message.lower():
        return f"truncated image data ({message})"
    return f"corrupt or unsupported image data ({type(error).__name__}: {message})"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:200] if text else type(error).__name__


# Pillow signals "more than MAX_IMAGE_PIXELS" with a DecompressionBombWarning, which would print and carry on.
# We turn it into an exception for the duration of our decodes only. warnings.catch_warnings() swaps the
# process-wide filter list, so overlapping enters/exits from several decode threads could restore the wrong list
# and leave our filter installed for good; a reference count makes the first decode install it and the last one
# restore the original list. While any decode runs, other threads' DecompressionBombWarnings are errors too.
_guard_lock = threading.Lock()
_guard_users = 0
_guard_context: warnings.catch_warnings | None = None


@contextlib.contextmanager
def _decompression_bomb_warnings_as_errors() -> Iterator[None]:
    global _guard_users, _guard_context
    with _guard_lock:
        if _guard_users == 0:
            _guard_context = warnings.catch_warnings()
            _guard_context.__enter__()
            warnings.simplefilter("error", Image.DecompressionBombWarning)
        _guard_users += 1
    try:
        yield
    finally:
        with _guard_lock:
            _guard_users -= 1
            if _guard_users == 0 and _guard_context is not None:
                _guard_context.__exit__(None, None, None)
                _guard_context = None
