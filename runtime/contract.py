"""The preprocessing contract: the one definition of how pixels become model input.

A contract travels inside every checkpoint (``run.json``) and every exported model (ONNX ``metadata_props``,
TorchScript ``_extra_files``) as JSON. Training, export and the runtime all read it from there; nothing else in
the project hard-codes image size, normalisation or class names.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cifar_edge.runtime.common.command import first_line

# Bump when a field changes meaning; readers refuse contracts from a newer schema than they know. Version 2 added
# the pixel input form: a float-form contract still writes 1, so earlier runtimes keep reading those files.
SCHEMA_VERSION = 2
PIXEL_FORM_SCHEMA = 2

# Key under which the contract JSON is stored in ONNX metadata_props and TorchScript _extra_files.
CONTRACT_METADATA_KEY = "cifar_edge.contract"
# Key for provenance JSON (source weights sha256, metrics, versions, precision, export date).
PROVENANCE_METADATA_KEY = "cifar_edge.provenance"

CIFAR10_CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Per-channel statistics of the CIFAR-10 training images, on the [0, 1] scale.
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)

# Pillow resampling filters we allow, by name. torchvision's Resize on a PIL image uses the same Pillow filter,
# which is what makes training-time and runtime preprocessing bit-identical.
RESIZE_METHODS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")

# What a model file takes as input. "float": float32 NCHW after (pixel / 255 - mean) / std, applied by the caller.
# "pixels": uint8 NHWC RGB at any size; resize, normalisation and softmax are inside the graph (docs/portable.md).
INPUT_FORMS = ("float", "pixels")
# Resize methods that ONNX Resize reproduces (antialias=1, exclude_outside=1, half_pixel, linear: within 1 LSB of
# Pillow on photos); a pixel-form file may only ask for these.
PIXEL_EXACT_RESIZE = ("bilinear",)


# Bounds on what a contract may ask for: every value inside them is usable by the runtime on an edge device.
# A side of the network input, in pixels: one (H, W, 3) float32 input of 1024 x 1024 is 12 MiB, a batch of 64 under
# 1 GiB; a contract asking for more is a mistake or an attack (the resize alone would exhaust memory).
MAX_IMAGE_SIDE = 1024
MAX_CLASSES = 100_000
# |(pixel / 255 - mean) / std| for any pixel must stay within float16's range, so the inputs are finite at any
# precision (fp16 models take fp16 inputs).
MAX_INPUT_MAGNITUDE = 65504.0


class ContractError(ValueError):
    """A contract is missing, malformed, or from a newer schema than this code understands."""


@dataclass(frozen=True)
class Contract:
    """How to turn an image file into the model's input tensor, and how to read its output."""

    class_names: tuple[str, ...] = CIFAR10_CLASS_NAMES
    # (height, width) in pixels of the network input; images of any other size are resized to it.
    image_size: tuple[int, int] = (32, 32)
    # Channel order of the input tensor after decoding.
    channel_order: str = "RGB"
    # Tensor layout of the model input.
    layout: str = "NCHW"
    # Input = (pixel / 255 - mean) / std, per channel, in float32. mean=0, std=1 gives plain [0, 1] inputs.
    mean: tuple[float, float, float] = CIFAR10_MEAN
    std: tuple[float, float, float] = CIFAR10_STD
    # Pillow filter used to resize to image_size (skipped when the image already has that size).
    resize_method: str = "bilinear"
    # Images with transparency are composited on this RGB background before use.
    alpha_background: tuple[int, int, int] = (255, 255, 255)
    input_name: str = "images"
    output_name: str = "logits"
    # What the output holds: raw logits (softmax is applied by the runtime).
    output_kind: str = "logits"
    schema_version: int = field(default=1)
    # "float" (the caller normalises) or "pixels" (uint8 NHWC in, everything else in the graph): INPUT_FORMS.
    input_form: str = "float"

    def __post_init__(self) -> None:
        # Sequences read from JSON arrive as lists: store tuples, so contracts compare and hash by value.
        for name in ("class_names", "image_size", "mean", "std", "alpha_background"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        problems = _problems(self)
        if problems:
            raise ContractError("invalid contract: " + "; ".join(problems))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # JSON has no tuples; lists read back into tuples in from_dict.
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Contract:
        if not isinstance(data, dict):
            raise ContractError(f"contract must be a JSON object, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        missing = {"class_names", "image_size", "mean", "std", "schema_version"} - data.keys()
        if missing:
            raise ContractError(f"contract is missing fields: {', '.join(sorted(missing))}")
        try:
            values: dict[str, Any] = {
                key: tuple(value) if isinstance(value, list) else value for key, value in data.items() if key in known
            }
            return cls(**values)
        except (TypeError, OverflowError) as error:
            raise ContractError(f"malformed contract: {error}") from None

    @classmethod
    def from_json(cls, text: str) -> Contract:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as error:
            raise ContractError(f"contract is not valid JSON: {first_line(error)}") from None
        return cls.from_dict(data)

    def with_classes(self, class_names: tuple[str, ...] | list[str]) -> Contract:
        return replace(self, class_names=tuple(class_names))

    @property
    def takes_pixels(self) -> bool:
        return self.input_form == "pixels"

    def pixel_form(self) -> Contract:
        """The same preprocessing, done inside the model: uint8 NHWC ``pixels`` in (the graph resizes, normalises
        and applies softmax; ``logits`` stays an output)."""
        return replace(self, input_form="pixels", layout="NHWC", input_name="pixels", schema_version=PIXEL_FORM_SCHEMA)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _numbers(value: Any, count: int) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == count and all(_is_number(item) for item in value)


def _problems(contract: Contract) -> list[str]:
    """Every reason ``contract`` is unusable: wrong types, non-finite numbers, values out of their bounds."""
    problems = []
    names = contract.class_names
    if not isinstance(names, (tuple, list)) or not all(isinstance(name, str) for name in names):
        problems.append("class_names must be a list of strings")
    elif not 2 <= len(names) <= MAX_CLASSES:
        problems.append(f"needs 2 to {MAX_CLASSES:,} class names, got {len(names)}")
    elif len(set(names)) != len(names):
        problems.append("class names must be unique")
    elif any(not name or any(ch in name for ch in "\n\r\0") for name in names):
        problems.append("class names must be non-empty, without line breaks or NUL characters")
    size = contract.image_size
    if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(_is_int(side) for side in size):
        problems.append(f"image_size must be 2 integers (height, width), got {size!r}")
    elif not all(1 <= side <= MAX_IMAGE_SIDE for side in size):
        problems.append(f"image_size sides must be 1..{MAX_IMAGE_SIDE}, got {list(size)}")
    mean, std = contract.mean, contract.std
    if not _numbers(mean, 3) or not _numbers(std, 3):
        problems.append("mean and std need 3 numbers each (one per RGB channel)")
    elif not all(_finite(value) for value in (*mean, *std)):
        problems.append(f"mean and std must be finite, got mean {list(mean)}, std {list(std)}")
    elif any(value <= 0 for value in std):
        problems.append(f"std values must be > 0, got {list(std)}")
    else:
        largest = max(max(abs(mu), abs(1 - mu)) / sigma for mu, sigma in zip(mean, std, strict=True))
        if not largest <= MAX_INPUT_MAGNITUDE:
            problems.append(
                f"mean {list(mean)} and std {list(std)} give inputs up to {largest:.3g} in size "
                f"(at most {MAX_INPUT_MAGNITUDE:g}, float16's range)"
            )
    background = contract.alpha_background
    if not (
        isinstance(background, (tuple, list))
        and len(background) == 3
        and all(_is_int(value) and 0 <= value <= 255 for value in background)
    ):
        problems.append("alpha_background must be 3 integers in 0..255")
    for key in ("channel_order", "layout", "resize_method", "input_name", "output_name", "output_kind"):
        value = getattr(contract, key)
        if not isinstance(value, str) or not value:
            problems.append(f"{key} must be a non-empty string")
    if isinstance(contract.resize_method, str) and contract.resize_method not in RESIZE_METHODS:
        problems.append(f"resize_method must be one of {RESIZE_METHODS}, got {contract.resize_method!r}")
    if contract.input_form not in INPUT_FORMS:
        problems.append(f"input_form must be one of {INPUT_FORMS}, got {contract.input_form!r}")
    elif contract.input_form == "pixels":
        if contract.channel_order != "RGB" or contract.layout != "NHWC":
            problems.append("the pixel input form takes RGB pixels in NHWC layout")
        if contract.resize_method not in PIXEL_EXACT_RESIZE:
            problems.append(
                f"the pixel input form resizes in the graph, exactly only with {PIXEL_EXACT_RESIZE}, "
                f"not {contract.resize_method!r}"
            )
        if _is_int(contract.schema_version) and contract.schema_version < PIXEL_FORM_SCHEMA:
            problems.append(f"the pixel input form needs schema_version >= {PIXEL_FORM_SCHEMA}")
    elif contract.channel_order != "RGB" or contract.layout != "NCHW":
        problems.append("only RGB channel order and NCHW layout are supported")
    version = contract.schema_version
    if not _is_int(version) or version < 1:
        problems.append(f"schema_version must be an integer >= 1, got {version!r}")
    elif version > SCHEMA_VERSION:
        problems.append(
            f"schema_version {version} is newer than this cifar-edge understands ({SCHEMA_VERSION}); upgrade cifar-edge"
        )
    return problems


def unnormalized_contract(**overrides: Any) -> Contract:
    """Inputs scaled to [0, 1] with no mean/std normalisation (the original tutorial's preprocessing)."""
    return replace(Contract(), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), **overrides)
