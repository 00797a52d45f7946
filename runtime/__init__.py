"""Torch-free runtime: the preprocessing contract and onnxruntime-based classification.

Nothing in this package may import torch or torchvision (tests/runtime/test_no_torch.py proves it).
"""

from cifar_edge.runtime.contract import (
    CONTRACT_METADATA_KEY,
    PROVENANCE_METADATA_KEY,
    SCHEMA_VERSION,
    Contract,
    ContractError,
)

__all__ = [
    "CONTRACT_METADATA_KEY",
    "PROVENANCE_METADATA_KEY",
    "SCHEMA_VERSION",
    "Contract",
    "ContractError",
]
