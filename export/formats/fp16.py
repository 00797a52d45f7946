"""fp32 ONNX -> fp16 weights and compute, with the fp32 input and output kept (callers feed the same tensors).

Uses onnxruntime's own converter (``onnxruntime.transformers.float16``, ``keep_io_types=True``) on the fp32 graph
the exporter already produced: one torch export per run serves both precisions, the fp32 input and output are kept
by construction, and ops on the converter's block list stay in fp32. (Exporting ``model.half()`` with casts at the
boundary gave the same logits on the trained seed net; it is not needed.) The converter appends its boundary Casts
at the end of the node list; a topological sort (onnx_ir) restores the order the ONNX checker requires.
"""

from __future__ import annotations

import onnx
import onnx_ir
from onnx_ir.passes.common import TopologicalSortPass
from onnxruntime.transformers.float16 import convert_float_to_float16

from cifar_edge.export.errors import ExportFailedError
from cifar_edge.runtime.common.command import first_line

FP16_CONVERTER = "onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)"


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        converted = convert_float_to_float16(model, keep_io_types=True)
    except Exception as error:  # the converter raises bare exceptions for unsupported graphs
        raise ExportFailedError(f"fp16 conversion failed: {type(error).__name__}: {first_line(error)}") from None
    ir_model = onnx_ir.from_proto(converted)
    TopologicalSortPass()(ir_model)
    return onnx_ir.to_proto(ir_model)
