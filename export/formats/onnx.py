"""PyTorch module -> fp32 ONNX with torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``).

Why dynamo: it is torch's default and maintained exporter since 2.9; the TorchScript-based one warns that it will
be removed (and builds on the deprecated tracer). The dynamo exporter captures the graph with ``torch.export``, the
same capture our ``.pt2`` format uses, so one tracing path backs two artifacts.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import onnx_ir
import torch
from onnx_ir.passes.common import RemoveUnusedOpsetsPass
from torch import nn

from cifar_edge.export.errors import ExportFailedError
from cifar_edge.export.quiet import quiet_tools
from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.contract import Contract

ONNX_EXPORTER = "torch.onnx.export(dynamo=True)"
BATCH_AXIS_NAME = "batch"
# Example batch for tracing: 2, because torch.export specialises dimensions whose example size is 0 or 1.
_EXAMPLE_BATCH = 2


def example_input(contract: Contract, batch: int = _EXAMPLE_BATCH) -> torch.Tensor:
    height, width = contract.image_size
    return torch.zeros(batch, 3, height, width, dtype=torch.float32)


def export_onnx_fp32(module: nn.Module, contract: Contract, opset: int) -> onnx.ModelProto:
    """Export ``module`` as it is (the caller puts it in eval mode) with a dynamic batch axis."""
    batch = torch.export.Dim(BATCH_AXIS_NAME, min=1)
    try:
        with quiet_tools(), torch.no_grad():
            program = torch.onnx.export(
                module,
                (example_input(contract),),
                input_names=[contract.input_name],
                output_names=[contract.output_name],
                dynamic_shapes=({0: batch},),
                opset_version=opset,
                dynamo=True,
                optimize=True,
                verbose=False,
            )
    except Exception as error:  # the exporter raises many types; all mean "this model did not export"
        raise ExportFailedError(f"ONNX export failed: {type(error).__name__}: {first_line(error)}") from None
    model = program.model_proto
    exported_opset = default_opset(model)
    if exported_opset != opset:
        raise ExportFailedError(
            f"ONNX export produced opset {exported_opset}, not the requested {opset} (the ONNX version converter "
            f"cannot reach it for this model); use --opset {exported_opset} or leave the default"
        )
    return model


def default_opset(model: onnx.ModelProto) -> int | None:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), None)


def drop_unused_opsets(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove opset imports no node uses (onnxruntime's tools add a handful), so readers see what the graph needs."""
    ir_model = onnx_ir.from_proto(model)
    RemoveUnusedOpsetsPass()(ir_model)
    return onnx_ir.to_proto(ir_model)


def save_validated(model: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to ``path`` and run the full ONNX checker (with shape inference) on the written file."""
    onnx.save_model(model, os.fspath(path))
    validate_onnx_file(path)


def validate_onnx_file(path: str | os.PathLike[str]) -> None:
    """onnx.checker with full_check on a file; ExportFailedError with one line when it fails."""
    try:
        onnx.checker.check_model(os.fspath(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportFailedError(f"{Path(path).name}: onnx.checker rejected the model: {first_line(error)}") from None
