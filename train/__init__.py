"""Training: ``from cifar_edge.train import TrainConfig, fit``.

Importing this package imports torch (``fit`` needs it); matplotlib and torchvision are only imported when used.
Without the ``[train]`` extra the package still imports (``TrainConfig`` needs no torch), so ``cifar-train`` can
say which extra is missing; ``fit`` then raises the ModuleNotFoundError on first use.
"""

from __future__ import annotations

from typing import Any

from cifar_edge.runtime.common.command import missing_module
from cifar_edge.train.config import TrainConfig

try:
    from cifar_edge.train.fit import FitResult, fit
except ModuleNotFoundError as error:  # a runtime-only install: no torch
    if missing_module(error) is None:
        raise

__all__ = ["FitResult", "TrainConfig", "fit"]


def __getattr__(name: str) -> Any:
    if name in ("FitResult", "fit"):
        import importlib

        return getattr(importlib.import_module("cifar_edge.train.fit"), name)  # raises the ModuleNotFoundError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
