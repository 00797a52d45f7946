"""The preprocessing contract: the one definition of how pixels become model input.

A contract travels inside every checkpoint (``run.json``) and every exported model (ONNX ``metadata_props``,
TorchScript ``_extra_files``) as JSON. Training, export and the runtime all read it from there; nothing else in
the project hard-codes image size, normalisation or class names.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

# Bump when a field changes meaning; readers refuse contracts from a newer schema than they know.
SCHEMA_VERSION = 1

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
    schema_version: int = field(default=SCHEMA_VERSION)

    def __post_init__(self) -> None:
        problems = []
        if len(self.class_names) < 2:
            problems.append("needs at least 2 class names")
        if len(set(self.class_names)) != len(self.class_names):
            problems.append("class names must be unique")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            problems.append(f"image_size must be (height, width) >= 1, got {self.image_size}")
        if len(self.mean) != 3 or len(self.std) != 3:
            problems.append("mean and std need 3 values (one per RGB channel)")
        elif any(s <= 0 for s in self.std):
            problems.append("std values must be > 0")
        if self.resize_method not in RESIZE_METHODS:
            problems.append(f"resize_method must be one of {RESIZE_METHODS}, got {self.resize_method!r}")
        if self.channel_order != "RGB" or self.layout != "NCHW":
            problems.append("only RGB channel order and NCHW layout are supported")
        if self.schema_version > SCHEMA_VERSION:
            problems.append(
                f"schema_version {self.schema_version} is newer than this cifar-edge understands "
                f"({SCHEMA_VERSION}); upgrade cifar-edge"
            )
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
            values = {
                key: tuple(value) if isinstance(value, list) else value for key, value in data.items() if key in known
            }
            return cls(**values)
        except TypeError as error:
            raise ContractError(f"malformed contract: {error}") from None

    @classmethod
    def from_json(cls, text: str) -> Contract:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ContractError(f"contract is not valid JSON: {error}") from None
        return cls.from_dict(data)

    def with_classes(self, class_names: tuple[str, ...] | list[str]) -> Contract:
        return replace(self, class_names=tuple(class_names))


def unnormalized_contract(**overrides: Any) -> Contract:
    """Inputs scaled to [0, 1] with no mean/std normalisation (the original tutorial's preprocessing)."""
    return replace(Contract(), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), **overrides)
