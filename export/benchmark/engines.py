"""The engine behind each ``cifar-bench`` row (one per variant and provider), or why it cannot run here."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from cifar_edge.export.benchmark.artifacts import Variant
from cifar_edge.export.engines import Engine, onnx_engine, torch_device, torch_engine, torchscript_engine
from cifar_edge.runtime.providers.strict import ProviderUnavailableError


class RowSkipped(Exception):
    """This row cannot run here (the provider is not active); ``str()`` says why."""


def open_row_engine(
    variant: Variant, path: Path, reference_module: torch.nn.Module, provider: str, threads: int
) -> Engine:
    """The row's engine; RowSkipped when its provider is not active (strict, as in cifar-infer)."""
    try:
        if variant.engine == "onnx":
            return onnx_engine(path, provider, intra_op_threads=threads)
        device = torch_device(provider)
    except ProviderUnavailableError as error:
        raise RowSkipped(error.cause) from None
    if variant.engine == "torchscript":
        return torchscript_engine(path, device)
    module = reference_module if device == "cpu" else copy.deepcopy(reference_module).to(device)
    return torch_engine(module, device)
