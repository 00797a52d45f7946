"""The fast path for plain JPEG files: libjpeg-turbo through simplejpeg, the same pixels as Pillow's decoder.

Pillow spends most of a small JPEG's decode in Python (plugin lookup, marker parsing); simplejpeg hands the bytes to
libjpeg-turbo in one call. Both run libjpeg-turbo's default (accurate) IDCT and fancy upsampling, so their RGB output
is bit-identical for YCbCr and greyscale JPEGs (tested). Only such files take this path; the rest go to Pillow
(``images.py``), which also writes every error message:

- no EXIF block (orientation is Pillow's job) and no other colour space (CMYK, YCCK, Adobe RGB: Pillow converts
  them its own way);
- the pixel limit is checked from the header before decoding, with the same message;
- anything libjpeg-turbo reports, even a recoverable warning such as truncated data, hands the file to Pillow.
"""

from __future__ import annotations

import numpy as np
from PIL import ImageFile

from cifar_edge.runtime.images import check_pixel_count

_SOI = b"\xff\xd8\xff"  # start-of-image marker, then the first segment's marker
_EXIF = b"Exif\x00\x00"  # an APP1 EXIF block; also found by chance in image data, which only costs the fast path
_PLAIN_COLOURSPACES = frozenset({"YCbCr", "Gray"})


def decode_plain_jpeg(data: bytes, source: str, limit: int | None) -> np.ndarray | None:
    """uint8 (H, W, 3) RGB pixels of a plain JPEG, or None when Pillow must decode ``data`` (not a plain JPEG,
    simplejpeg not installed, or libjpeg-turbo had anything to report). ImageDecodeError over ``limit`` pixels."""
    if not data.startswith(_SOI) or _EXIF in data or ImageFile.LOAD_TRUNCATED_IMAGES:
        return None
    try:
        import simplejpeg
    except ImportError:
        return None
    try:
        height, width, colourspace, _subsampling = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colourspace not in _PLAIN_COLOURSPACES:
        return None
    check_pixel_count((width, height), limit, source)
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError:
        return None
