"""Any image input to the contract's pixels, and pixels to model input: the one preprocessing path of runtime, eval,
export and training alike. Pillow + numpy only (no torch).

Inputs (:data:`ImageInput`): a path, the bytes of an encoded image file, a PIL image, or a uint8 array (H, W, 3),
(H, W) or (H, W, 4). Files and bytes are decoded by ``images.py`` (orientation, modes, limits, one-line errors),
except plain JPEGs, which take libjpeg-turbo's fast path (:func:`decode_plain_jpeg`) to the same pixels. Resizing
and normalising match torchvision's ``Resize((H, W)) > ToTensor > Normalize(mean, std)`` on a PIL RGB image.

Both input forms share every step up to the contract-size uint8 pixels; :class:`ModelInput` then makes the model's
input: normalised float NCHW for a float-form model, the pixels themselves (uint8 NHWC) for a pixel-form one, whose
graph normalises them.

The JPEG fast path: Pillow spends most of a small JPEG's decode in Python (plugin lookup, marker parsing);
simplejpeg hands the bytes to libjpeg-turbo in one call. Both run libjpeg-turbo's default (accurate) IDCT and fancy
upsampling, so their RGB output is bit-identical for YCbCr and greyscale JPEGs (tested). Only such files take it:

- no EXIF block (orientation is Pillow's job) and no other colour space (CMYK, YCCK, Adobe RGB: Pillow converts
  them its own way);
- the pixel limit is checked from the header before decoding, with the same message;
- anything libjpeg-turbo reports, even a recoverable warning such as truncated data, hands the file to Pillow.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps

from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.images import (
    ImageDecodeError,
    check_pixel_count,
    decode_image_bytes,
    effective_pixel_limit,
    open_image_rgb,
    read_image_file,
    to_rgb,
)

ImageInput = str | os.PathLike[str] | bytes | Image.Image | np.ndarray

# Files up to this size are read whole, so a plain JPEG can take the fast path; larger ones stream through Pillow
# (reading a huge file into memory before knowing what it is would be a cheap way to exhaust a device).
WHOLE_FILE_MAX_BYTES = 64 << 20

_PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
_SOI = b"\xff\xd8\xff"  # start-of-image marker, then the first segment's marker
_EXIF = b"Exif\x00\x00"  # an APP1 EXIF block; also found by chance in image data, which only costs the fast path
_PLAIN_COLOURSPACES = frozenset({"YCbCr", "Gray"})
# The numpy type a float-form graph's input is fed as, by onnxruntime's type name (anything else: float32).
_FLOAT_INPUTS: dict[str, Any] = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def describe_source(item: object, position: int) -> str:
    """How results name an input: its path, a PIL image's file name, or ``<PIL image N>``, ``<bytes N>``,
    ``<array N>`` by its position."""
    if isinstance(item, str | os.PathLike):
        return str(item)
    if isinstance(item, Image.Image):
        filename = getattr(item, "filename", "")
        return str(filename) if filename else f"<PIL image {position}>"
    if isinstance(item, bytes):
        return f"<bytes {position}>"
    return f"<array {position}>"


def input_pixels(item: ImageInput, contract: Contract, *, max_pixels: int | None = None) -> np.ndarray:
    """Any :data:`ImageInput` -> uint8 (H, W, 3) at the contract's size (decoded, oriented, RGB, resized);
    ImageDecodeError when it cannot be, TypeError for anything that is not an image input."""
    if isinstance(item, str | os.PathLike):
        return file_pixels(item, contract, max_pixels=max_pixels)
    if isinstance(item, bytes):
        return bytes_pixels(item, "<bytes>", contract, max_pixels=max_pixels)
    if isinstance(item, np.ndarray):
        image = array_to_image(item, contract.alpha_background)
    elif isinstance(item, Image.Image):
        image = pil_to_rgb(item, contract.alpha_background)
    else:
        raise TypeError(
            f"cannot classify a {type(item).__name__}: pass a path, encoded bytes, a PIL image or a uint8 array"
        )
    return resize_to_contract(image, contract)


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


def decode_plain_jpeg(data: bytes, source: str, limit: int | None) -> np.ndarray | None:
    """uint8 (H, W, 3) RGB pixels of a plain JPEG, or None when Pillow must decode ``data`` (not a plain JPEG,
    simplejpeg not installed, or libjpeg-turbo had anything to report). ImageDecodeError over ``limit`` pixels."""
    if not data.startswith(_SOI) or _EXIF in data or ImageFile.LOAD_TRUNCATED_IMAGES:
        return None
    try:
        import simplejpeg  # optional: without it every file goes through Pillow
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
        pixels: np.ndarray = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError:
        return None
    return pixels


def pil_to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """A caller's PIL image -> RGB, EXIF orientation applied as for files; ImageDecodeError when it cannot be."""
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
    """A uint8 (H, W, 3), (H, W, 4) or (H, W) array -> RGB PIL image; ImageDecodeError for anything else."""
    if array.dtype != np.uint8:
        raise ImageDecodeError("<array>", f"expected a uint8 array, got {array.dtype} (scale it to 0..255 first)")
    if array.ndim == 2:
        return Image.fromarray(array, "L").convert("RGB")
    if array.ndim == 3 and array.shape[-1] == 3:
        return Image.fromarray(np.ascontiguousarray(array), "RGB")
    if array.ndim == 3 and array.shape[-1] == 4:
        return to_rgb(Image.fromarray(np.ascontiguousarray(array), "RGBA"), background)
    raise ImageDecodeError("<array>", f"expected (H, W, 3), (H, W, 4) or (H, W) uint8, got shape {array.shape}")


def resize_to_contract(image: Image.Image, contract: Contract) -> np.ndarray:
    """RGB PIL image -> uint8 array (H, W, 3) of the contract's image size."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {image.mode}")
    height, width = contract.image_size
    if image.size != (width, height):
        image = image.resize((width, height), _PIL_FILTERS[contract.resize_method])
    return np.asarray(image, dtype=np.uint8)


def normalize_batch(images: np.ndarray, contract: Contract) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W): ``(pixel / 255 - mean) / std`` per channel (the float input
    form's preprocessing; a pixel-form model does this in its graph)."""
    check_pixel_batch(images)
    scaled = images.astype(np.float32) / np.float32(255.0)
    mean = np.asarray(contract.mean, dtype=np.float32)
    std = np.asarray(contract.std, dtype=np.float32)
    normalized = (scaled - mean) / std
    return np.ascontiguousarray(normalized.transpose(0, 3, 1, 2))


def check_pixel_batch(images: np.ndarray) -> None:
    """ValueError unless ``images`` is a uint8 (N, H, W, 3) batch."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 (N, H, W, 3), got {images.dtype} {images.shape}")


@dataclass(frozen=True)
class ModelInput:
    """How contract-size uint8 pixels become one model's input, by the contract's input form.

    Float form: ``normalize_batch`` here, as float32 NCHW (float16 for a half-precision input). Pixel form: the same
    uint8 NHWC pixels, untouched: resize, normalisation and softmax are in the graph.
    """

    contract: Contract
    dtype: Any = np.float32  # the numpy type the graph's input is fed as

    @classmethod
    def for_graph(cls, contract: Contract, input_type: str) -> ModelInput:
        """The input of a graph whose (onnxruntime) input type is ``input_type``, e.g. "tensor(float16)"."""
        return cls(contract, np.uint8 if contract.takes_pixels else _FLOAT_INPUTS.get(input_type, np.float32))

    def from_pixels(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """uint8 (N, H, W, 3) at the contract size (or a list of (H, W, 3), stacked) -> the model's input."""
        if not isinstance(images, np.ndarray):
            height, width = self.contract.image_size
            images = np.stack(images) if len(images) else np.zeros((0, height, width, 3), np.uint8)
        if self.contract.takes_pixels:
            check_pixel_batch(images)
            return np.ascontiguousarray(images)
        return normalize_batch(images, self.contract).astype(self.dtype, copy=False)

    def coerce(self, inputs: np.ndarray) -> np.ndarray:
        """A caller's model-ready batch -> contiguous, of the graph's type. A pixel-form model takes only uint8
        (N, H, W, 3) pixels (ValueError otherwise: casting floats to uint8 would be silently wrong)."""
        inputs = np.ascontiguousarray(inputs)
        if not self.contract.takes_pixels:
            return inputs.astype(self.dtype, copy=False)
        if inputs.dtype != np.uint8 or inputs.ndim != 4 or inputs.shape[-1] != 3:
            raise ValueError(
                f"this pixel-form model takes uint8 (N, H, W, 3) pixels, got {inputs.dtype} {inputs.shape}"
            )
        return inputs

    def describe(self) -> str:
        """One line for reports: what the model takes and who preprocesses."""
        height, width = self.contract.image_size
        if self.contract.takes_pixels:
            return f"uint8 pixels NHWC, any size (resize to {height}x{width}, normalisation and softmax in the model)"
        return f"{np.dtype(self.dtype).name} NCHW {height}x{width}, normalised by the runtime"
