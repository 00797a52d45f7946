"""The int8 ONNX row of the format table: fp32 ONNX -> static int8 QDQ ONNX with onnxruntime's quantization tooling.

Static, never dynamic: dynamic quantization leaves convolutions in float and quantizes activations on the fly,
which made the tutorial net much slower on this CPU, while static QDQ runs faster than fp32 (docs/history.md,
'int8'). Weights are quantized per output channel (one scale per conv filter), activations per tensor with MinMax
ranges calibrated on real training images. S8S8 (int8 activations and weights) is onnxruntime's recommended first
choice for QDQ; with GELU on int8 kernels (int8_gelu.py) activations are uint8 (U8S8), which is what onnxruntime's
x86 kernels run either way.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from cifar_edge.export.config import ExportFailedError
from cifar_edge.export.formats import ArtifactFormat, WriteJob
from cifar_edge.export.formats.int8_gelu import SIGMOID_GELU_ALPHA, gelu_to_int8
from cifar_edge.export.formats.onnx import ONNX_EXPORTER, drop_unused_opsets, quiet_tools, save_artifact
from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.hardware import cpu_features, has_int8_dot_product
from cifar_edge.runtime.preprocess import normalize_batch

INT8_QUANTIZER = "onnxruntime.quantization.quantize_static"
# Ops that get int8 inputs. Convolutions and matrix products carry the compute; MaxPool keeps int8 flowing between
# conv layers; Gelu (one op from opset 20) gets Quantize/Dequantize around it, so the convolution before it has an
# int8 output and onnxruntime runs it as QLinearConv (docs/export.md, "int8"). Decomposed elementwise ops (Erf,
# Mul, Add, Div) stay float: quantizing each of them only adds Quantize/Dequantize pairs.
QUANTIZED_OP_TYPES = ("Conv", "Gemm", "MatMul", "MaxPool", "Gelu")
# Images per calibration batch fed to onnxruntime (memory stays small; the ranges do not depend on it).
_CALIBRATION_BATCH = 32


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds preprocessed float32 NCHW images to the calibrator in batches."""

    def __init__(self, input_name: str, images: np.ndarray, batch_size: int = _CALIBRATION_BATCH) -> None:
        self.input_name = input_name
        self.images = images
        self.batch_size = batch_size
        self._batches = self._iterate()

    def _iterate(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self.images), self.batch_size):
            yield {self.input_name: np.ascontiguousarray(self.images[start : start + self.batch_size])}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = self._iterate()


def reduce_range_for(features: dict[str, Any]) -> bool:
    """7-bit weights unless this CPU sums int8 products in int32 (VNNI/AMX): no int16 saturation either way."""
    return has_int8_dot_product(features) is not True


def activation_type(gelu: str) -> QuantType:
    """uint8 activations where GELU runs on int8 kernels (int8_gelu.py says why), else int8."""
    return QuantType.QUInt8 if gelu == "sigmoid" else QuantType.QInt8


def quantization_settings(
    calibration_count: int, reduce_range: bool, features: dict[str, Any], gelu: str
) -> dict[str, Any]:
    """What provenance records about the quantization, including the CPU it was quantized on and for."""
    return {
        "method": "static",
        "format": "QDQ",
        "per_channel": True,
        "activation_type": "uint8" if activation_type(gelu) is QuantType.QUInt8 else "int8",
        "weight_type": "int8",
        "calibration_method": "MinMax",
        "op_types": list(QUANTIZED_OP_TYPES),
        "calibration_images": calibration_count,
        "reduce_range": reduce_range,
        "gelu": f"x * sigmoid({SIGMOID_GELU_ALPHA} x), int8 (QLinearSigmoid, QLinearMul)"
        if gelu == "sigmoid"
        else "float",
        "quantized_on": features,
        "tool": INT8_QUANTIZER,
    }


def quantize_int8(
    model: onnx.ModelProto, input_name: str, calibration_images: np.ndarray, reduce_range: bool, gelu: str
) -> onnx.ModelProto:
    """Quantize ``model``; ``calibration_images`` are float32 (N, 3, H, W) already normalised like runtime input.

    ``reduce_range``: 7-bit weights, for CPUs without int8 dot-product instructions (runtime/hardware.py).
    ``gelu``: "sigmoid" moves each GELU onto int8 kernels (int8_gelu.py), "float" leaves it between Q/DQ.
    """
    if len(calibration_images) == 0:
        raise ExportFailedError("int8 quantization needs calibration images, got none")
    with tempfile.TemporaryDirectory(prefix="cifar-edge-int8-") as work:
        source = Path(work) / "fp32.onnx"
        prepared = Path(work) / "fp32.prepared.onnx"
        quantized = Path(work) / "int8.onnx"
        onnx.save_model(model, source)
        try:
            with quiet_tools():
                # Shape inference + onnxruntime's basic graph optimisations, as onnxruntime recommends before
                # quantizing. Its symbolic shape pass cannot follow the dynamo exporter's Reshape; ONNX's own runs.
                quant_pre_process(source, prepared, skip_symbolic_shape=True)
                quantize_static(
                    prepared,
                    quantized,
                    ImageCalibrationReader(input_name, calibration_images),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    reduce_range=reduce_range,
                    activation_type=activation_type(gelu),
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    op_types_to_quantize=list(QUANTIZED_OP_TYPES),
                )
        except Exception as error:  # onnxruntime's tooling raises many types; all mean "not quantized"
            raise ExportFailedError(f"int8 quantization failed: {type(error).__name__}: {first_line(error)}") from None
        result = onnx.load_model(quantized)
    if gelu == "sigmoid":
        gelu_to_int8(result)
    return result


def write_int8(job: WriteJob, row: ArtifactFormat, path: Path) -> None:
    """Quantize the run's fp32 graph on its calibration images, for this CPU unless --int8-weight-bits says."""
    config, contract = job.config, job.run.contract
    assert job.calibration is not None  # the export checked that int8 has calibration images
    calibration = normalize_batch(job.calibration.images, contract)
    features = cpu_features()
    reduce_range = config.reduce_range if config.reduce_range is not None else reduce_range_for(features)
    quantized = quantize_int8(job.fp32_graph(), contract.input_name, calibration, reduce_range, config.int8_gelu)
    settings = quantization_settings(len(calibration), reduce_range, features, config.int8_gelu)
    extra = {"quantization": {**settings, "calibration_source": job.calibration.description["source"]}}
    exporter = f"{ONNX_EXPORTER} + {INT8_QUANTIZER}"
    save_artifact(job, row, drop_unused_opsets(quantized), path, exporter=exporter, extra=extra)
