"""The ONNX rows of the format table: PyTorch module -> fp32 ONNX, fp16 conversion, and the checker the gate runs.

fp32: torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``). Why dynamo: it is torch's default and
maintained exporter since 2.9; the TorchScript-based one warns that it will be removed (and builds on the deprecated
tracer). The dynamo exporter captures the graph with ``torch.export``, the same capture our ``.pt2`` format uses, so
one tracing path backs two artifacts.

fp16: onnxruntime's own converter (``onnxruntime.transformers.float16``, ``keep_io_types=True``) on the fp32 graph
the exporter already produced: one torch export per run serves both precisions, the fp32 input and output are kept
by construction (callers feed the same tensors), and ops on the converter's block list stay in fp32. (Exporting
``model.half()`` with casts at the boundary gave the same logits on the trained seed net; it is not needed.) The
converter appends its boundary Casts at the end of the node list; a topological sort (onnx_ir) restores the order the
ONNX checker requires. int8 is quantize.py's row. The ONNX rows open through the torch-free runtime
(``engines.open_onnx``), so evaluating an ONNX file loads none of this module's torch and onnx.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import onnx_ir
import torch
from onnx_ir.passes.common import RemoveUnusedOpsetsPass, TopologicalSortPass
from onnxruntime.transformers.float16 import convert_float_to_float16
from torch import nn

from cifar_edge.export.config import ExportFailedError
from cifar_edge.export.formats import FLOAT_INPUT, ArtifactFormat, WriteJob
from cifar_edge.export.formats.metadata import build_provenance, embed_in_onnx
from cifar_edge.export.formats.pixels import pixel_contract, to_pixel_form
from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.contract import Contract

ONNX_EXPORTER = "torch.onnx.export(dynamo=True)"
FP16_CONVERTER = "onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)"
BATCH_AXIS_NAME = "batch"
# Example batch for tracing: 2, because torch.export specialises dimensions whose example size is 0 or 1.
_EXAMPLE_BATCH = 2
# Third-party tools whose chatter (progress prints, log records, deprecation warnings) stays off the terminal.
_LOGGERS = ("", "torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir", "onnxruntime")


@contextlib.contextmanager
def quiet_tools() -> Iterator[None]:
    """Silence stdout, warnings and log records below ERROR for the duration; errors still raise as usual."""
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, previous, strict=True):
            logger.setLevel(level)


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
    if program is None:  # dynamo=True always returns a program; None would mean the legacy exporter ran
        raise ExportFailedError("ONNX export failed: the exporter returned no program")
    model = program.model_proto
    exported_opset = default_opset(model)
    if exported_opset != opset:
        raise ExportFailedError(
            f"ONNX export produced opset {exported_opset}, not the requested {opset} (the ONNX version converter "
            f"cannot reach it for this model); use --opset {exported_opset} or leave the default"
        )
    return model


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        converted = convert_float_to_float16(model, keep_io_types=True)
    except Exception as error:  # the converter raises bare exceptions for unsupported graphs
        raise ExportFailedError(f"fp16 conversion failed: {type(error).__name__}: {first_line(error)}") from None
    ir_model = onnx_ir.from_proto(converted)
    TopologicalSortPass()(ir_model)
    sorted_model: onnx.ModelProto = onnx_ir.to_proto(ir_model)
    return sorted_model


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


def save_artifact(job: WriteJob, row: ArtifactFormat, model: onnx.ModelProto, path: Path, **made: Any) -> None:
    """``model`` (the float form) in the row's input form, with its contract and provenance embedded, written to
    ``path`` and checked. The pixel form is made here, once for every ONNX row (formats/pixels.py).

    ``made``: ``exporter`` (how the graph was made) and optionally ``extra`` (provenance sections of the precision).
    """
    input_form = row.input_form(job.config)
    contract = job.run.contract
    if input_form != FLOAT_INPUT:
        model, contract = to_pixel_form(model, contract), pixel_contract(contract)
    provenance = build_provenance(
        job.run,
        artifact_format=row.format,
        precision=row.precision,
        exporter=made["exporter"],
        tta=job.tta,
        opset=job.config.opset,
        input_form=input_form,
        extra=made.get("extra") or {},
    )
    save_validated(embed_in_onnx(model, contract, provenance), path)


def write_fp32(job: WriteJob, row: ArtifactFormat, path: Path) -> None:
    model = onnx.ModelProto()
    model.CopyFrom(job.fp32_graph())
    save_artifact(job, row, model, path, exporter=ONNX_EXPORTER)


def write_fp16(job: WriteJob, row: ArtifactFormat, path: Path) -> None:
    model = drop_unused_opsets(convert_to_fp16(job.fp32_graph()))
    extra = {"fp16": {"keep_io_types": True}}
    save_artifact(job, row, model, path, exporter=f"{ONNX_EXPORTER} + {FP16_CONVERTER}", extra=extra)
