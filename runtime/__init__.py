"""Torch-free runtime: the preprocessing contract and onnxruntime-based classification.

Nothing in this package may import torch or torchvision (tests/runtime/test_no_torch.py proves it).

``Classifier`` and the prediction types are imported lazily, so ``import cifar_edge.runtime`` (which training and
export do for the contract) stays light and does not need onnxruntime installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cifar_edge.runtime.contract import (
    CONTRACT_METADATA_KEY,
    PROVENANCE_METADATA_KEY,
    SCHEMA_VERSION,
    Contract,
    ContractError,
)

if TYPE_CHECKING:
    from cifar_edge.runtime.classifier import Classifier
    from cifar_edge.runtime.images import ImageDecodeError
    from cifar_edge.runtime.model_file import ModelError
    from cifar_edge.runtime.predictions import ClassScore, Failure, Prediction
    from cifar_edge.runtime.session import ProviderUnavailableError

_LAZY = {
    "Classifier": "cifar_edge.runtime.classifier",
    "ClassScore": "cifar_edge.runtime.predictions",
    "Failure": "cifar_edge.runtime.predictions",
    "Prediction": "cifar_edge.runtime.predictions",
    "ImageDecodeError": "cifar_edge.runtime.images",
    "ModelError": "cifar_edge.runtime.model_file",
    "ProviderUnavailableError": "cifar_edge.runtime.session",
}

__all__ = [
    "CONTRACT_METADATA_KEY",
    "PROVENANCE_METADATA_KEY",
    "SCHEMA_VERSION",
    "ClassScore",
    "Classifier",
    "Contract",
    "ContractError",
    "Failure",
    "ImageDecodeError",
    "ModelError",
    "Prediction",
    "ProviderUnavailableError",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
