"""One artifact written in its format: ONNX (fp32, fp16, int8), TorchScript or torch.export, with its metadata."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx
from torch import nn

from cifar_edge.export.formats.exported_program import EXPORTED_PROGRAM_EXPORTER, export_program
from cifar_edge.export.formats.fp16 import FP16_CONVERTER, convert_to_fp16
from cifar_edge.export.formats.metadata import build_provenance, embed_in_onnx, metadata_entries
from cifar_edge.export.formats.onnx import ONNX_EXPORTER, drop_unused_opsets, export_onnx_fp32, save_validated
from cifar_edge.export.formats.quantize import (
    INT8_QUANTIZER,
    quantization_settings,
    quantize_int8,
    reduce_range_for,
)
from cifar_edge.export.formats.torchscript import TORCHSCRIPT_EXPORTER, export_torchscript
from cifar_edge.export.results import Target
from cifar_edge.runtime.cpu import cpu_features
from cifar_edge.runtime.preprocess import normalize_batch

if TYPE_CHECKING:
    from cifar_edge.export.pipeline import ExportContext


def write_artifact(context: ExportContext, target: Target, module: nn.Module, path: Path) -> None:
    contract, config = context.run.contract, context.config
    if target.format == "onnx":
        fp32 = fp32_onnx(context, module)
        extra: dict[str, Any] = {}
        exporter = ONNX_EXPORTER
        if target.precision == "fp16":
            model = drop_unused_opsets(convert_to_fp16(fp32))
            exporter, extra = f"{ONNX_EXPORTER} + {FP16_CONVERTER}", {"fp16": {"keep_io_types": True}}
        elif target.precision == "int8":
            assert context.data.calibration is not None
            calibration = normalize_batch(context.data.calibration.images, contract)
            features = cpu_features()
            reduce_range = config.reduce_range if config.reduce_range is not None else reduce_range_for(features)
            quantized = quantize_int8(fp32, contract.input_name, calibration, reduce_range, config.int8_gelu)
            model = drop_unused_opsets(quantized)
            exporter = f"{ONNX_EXPORTER} + {INT8_QUANTIZER}"
            extra = {
                "quantization": {
                    **quantization_settings(len(calibration), reduce_range, features, config.int8_gelu),
                    "calibration_source": context.data.calibration.description["source"],
                }
            }
        else:
            model = onnx.ModelProto()
            model.CopyFrom(fp32)
        provenance = build_provenance(
            context.run,
            artifact_format="onnx",
            precision=target.precision,
            exporter=exporter,
            tta=context.tta,
            opset=config.opset,
            extra=extra,
        )
        save_validated(embed_in_onnx(model, contract, provenance), path)
        return
    if target.format == "torchscript":
        provenance = build_provenance(
            context.run, artifact_format="torchscript", precision="fp32", exporter=TORCHSCRIPT_EXPORTER, tta=context.tta
        )
        export_torchscript(module, contract, path, metadata_entries(contract, provenance))
        return
    provenance = build_provenance(
        context.run,
        artifact_format="exportedprogram",
        precision="fp32",
        exporter=EXPORTED_PROGRAM_EXPORTER,
        tta=context.tta,
    )
    export_program(module, contract, path, metadata_entries(contract, provenance))


def fp32_onnx(context: ExportContext, module: nn.Module) -> onnx.ModelProto:
    """The fp32 graph, exported once per run and reused by the fp16/int8 conversions."""
    if module is not context.export_module:
        return export_onnx_fp32(module, context.run.contract, context.config.opset)
    if context.fp32_cache is None:
        context.fp32_cache = export_onnx_fp32(module, context.run.contract, context.config.opset)
    return context.fp32_cache
