"""Every format and precision round-trips: written, gated, loadable, equal to the PyTorch model, dynamic batch."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_helpers import copy_run

from cifar_edge.export import DEFAULT_OPSET, ExportConfig, export_run
from cifar_edge.runtime.hardware import cpu_features, has_int8_dot_product
from cifar_edge.runtime.preprocess import normalize_batch
from cifar_edge.train.run_folder import load_run

pytestmark = [
    pytest.mark.usefixtures("single_torch_thread"),
    # TorchScript is deprecated upstream (see docs/export.md); loading our own file to check it is the point here.
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning"),
]

BATCHES = (1, 3, 64)


def _inputs(run_dir: Path, batch: int, seed: int = 7) -> np.ndarray:
    contract = load_run(run_dir).contract
    pixels = np.random.default_rng(seed).integers(0, 256, size=(batch, 32, 32, 3), dtype=np.uint8)
    return normalize_batch(pixels, contract)


def _torch_logits(run_dir: Path, inputs: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return load_run(run_dir).model(torch.from_numpy(inputs)).numpy()


def test_all_formats_pass_the_gate_and_write_reports(exported_all) -> None:
    assert exported_all.ok and exported_all.exit_code == 0
    names = sorted(artifact.path.name for artifact in exported_all.artifacts)
    assert names == ["model.onnx", "model.pt2", "model.torchscript.pt"]
    for artifact in exported_all.artifacts:
        assert artifact.written and artifact.report is not None and artifact.report.passed
        assert artifact.path.parent == exported_all.run_dir  # default: beside the weights
        parity = json.loads(artifact.parity_path.read_text())
        assert parity["passed"] and parity["precision"] == "fp32"
        assert parity["size_bytes"] == artifact.path.stat().st_size
        real = [c for b in parity["backends"] for c in b["comparisons"] if c["name"] == "real images"]
        assert real and real[0]["inputs"] == 60  # every labelled validation image of the fixture
        assert real[0]["max_abs_diff"] <= 1e-4 and real[0]["top1_agreement"] == 1.0
        assert real[0]["reference_accuracy"] == real[0]["artifact_accuracy"]
        assert parity["preprocessing"]["passed"]
    leftovers = [path.name for path in exported_all.run_dir.iterdir() if path.name.endswith(".tmp")]
    assert not leftovers


def test_artifacts_get_ordinary_file_permissions(exported_all) -> None:
    # Written through a temporary file (0600 from mkstemp); the final file must be readable like any other.
    umask = os.umask(0o022)
    os.umask(umask)
    for artifact in exported_all.artifacts:
        for path in (artifact.path, artifact.parity_path):
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


@pytest.mark.parametrize("batch", BATCHES)
def test_onnx_round_trip_dynamic_batch(exported_all, batch: int) -> None:
    """The default ONNX file takes raw uint8 pixels (the pixel form, tests/export/formats/test_pixels.py)."""
    run_dir = exported_all.run_dir
    path = run_dir / "model.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert [entry.version for entry in model.opset_import if entry.domain == ""] == [DEFAULT_OPSET]
    assert model.graph.input[0].name == "pixels" and [value.name for value in model.graph.output] == [
        "probabilities",
        "logits",
    ]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(7).integers(0, 256, size=(batch, 32, 32, 3), dtype=np.uint8)
    probabilities, logits = session.run(["probabilities", "logits"], {"pixels": pixels})
    assert logits.shape == (batch, 3)
    np.testing.assert_allclose(logits, _torch_logits(run_dir, _inputs(run_dir, batch)), atol=1e-4, rtol=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


@pytest.fixture(scope="module")
def torch_artifacts(exported_all) -> dict[str, torch.nn.Module]:
    run_dir = exported_all.run_dir
    return {  # our own files, written just now: the only kind of TorchScript / .pt2 file one may load
        "torchscript": torch.jit.load(str(run_dir / "model.torchscript.pt")),
        "exportedprogram": torch.export.load(str(run_dir / "model.pt2")).module(),
    }


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("artifact_format", ["torchscript", "exportedprogram"])
def test_torch_formats_round_trip(exported_all, torch_artifacts, artifact_format: str, batch: int) -> None:
    run_dir = exported_all.run_dir
    inputs = _inputs(run_dir, batch)
    with torch.inference_mode():
        logits = torch_artifacts[artifact_format](torch.from_numpy(inputs)).numpy()
    assert logits.shape == (batch, 3)
    np.testing.assert_allclose(logits, _torch_logits(run_dir, inputs), atol=1e-5, rtol=0)


def test_fp16_float_form_onnx_keeps_fp32_io_and_agrees(
    trained_run_dir: Path, labelled_data_dir: Path, tmp_path: Path
) -> None:
    run_dir = copy_run(trained_run_dir, tmp_path / "run")
    config = ExportConfig(dtype="fp16", data=labelled_data_dir, opset=17, input_form="float")
    result = export_run(run_dir, config)
    (artifact,) = result.artifacts
    assert result.ok and artifact.path == run_dir / "model.fp16.onnx" and artifact.report.passed
    model = onnx.load(str(artifact.path))
    assert [entry.version for entry in model.opset_import if entry.domain == ""] == [17]
    float_types = {init.data_type for init in model.graph.initializer if init.data_type != onnx.TensorProto.INT64}
    assert float_types == {onnx.TensorProto.FLOAT16}  # weights are halves ...
    for value in (model.graph.input[0], model.graph.output[0]):  # ... inputs and outputs stay fp32
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    session = ort.InferenceSession(str(artifact.path), providers=["CPUExecutionProvider"])
    inputs = _inputs(run_dir, 3)
    logits = session.run(None, {"images": inputs})[0]
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, _torch_logits(run_dir, inputs), atol=5e-2, rtol=0)
    assert artifact.size_bytes < (run_dir / "model.safetensors").stat().st_size


def test_int8_onnx_is_static_qdq_per_channel(trained_run_dir: Path, labelled_data_dir: Path, tmp_path: Path) -> None:
    run_dir = copy_run(trained_run_dir, tmp_path / "run")
    result = export_run(run_dir, ExportConfig(quantize="int8", calibration_images=48, data=labelled_data_dir))
    (artifact,) = result.artifacts
    assert result.ok and artifact.path == run_dir / "model.int8.onnx"
    checks = {check.name: check for _, check in artifact.report.all_checks()}
    drop = checks["accuracy drop vs fp32 PyTorch (pp)"]
    assert drop.passed and drop.measured <= 1.0
    model = onnx.load(str(artifact.path))
    op_types = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types
    assert "DynamicQuantizeLinear" not in op_types  # static, never dynamic
    initializers = {init.name: init for init in model.graph.initializer}
    weight_scales = [
        initializers[node.input[1]]
        for node in model.graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers and "weight" in node.input[0]
    ]
    assert weight_scales and any(len(scale.dims) == 1 and scale.dims[0] > 1 for scale in weight_scales)  # per channel
    provenance = json.loads({p.key: p.value for p in model.metadata_props}["cifar_edge.provenance"])
    assert provenance["quantization"]["calibration_images"] == 48
    assert provenance["quantization"]["per_channel"] is True
    assert "Gelu" in provenance["quantization"]["op_types"]
    quantized_on = provenance["quantization"]["quantized_on"]
    assert quantized_on == cpu_features()  # the CPU it was quantized on, recorded with its int8 flags
    assert provenance["quantization"]["reduce_range"] is (has_int8_dot_product(quantized_on) is not True)
    assert provenance["quantization"]["activation_type"] == "uint8" and "sigmoid" in provenance["quantization"]["gelu"]
    ops = _runs_as(artifact.path, tmp_path)
    assert ops.count("QLinearSigmoid") == ops.count("QLinearMul") == CONVOLUTIONS, ops  # one GELU per convolution
    # Integer from the input's Quantize to the head's Dequantize: no float GELU, no Q/DQ pair between layers.
    assert "Gelu" not in ops and ops.count("QuantizeLinear") + ops.count("DequantizeLinear") <= 4, ops


def test_int8_float_gelu_keeps_standard_onnx_ops(
    trained_run_dir: Path, labelled_data_dir: Path, tmp_path: Path
) -> None:
    run_dir = copy_run(trained_run_dir, tmp_path / "run")
    config = ExportConfig(quantize="int8", int8_gelu="float", calibration_images=48, data=labelled_data_dir)
    (artifact,) = export_run(run_dir, config).artifacts
    model = onnx.load(str(artifact.path))
    assert artifact.written and {opset.domain for opset in model.opset_import} <= {"", "ai.onnx"}
    assert sum(node.op_type == "Gelu" for node in model.graph.node) == CONVOLUTIONS
    provenance = json.loads({p.key: p.value for p in model.metadata_props}["cifar_edge.provenance"])
    assert provenance["quantization"]["gelu"] == "float" and provenance["quantization"]["activation_type"] == "int8"
    assert _runs_as(artifact.path, tmp_path).count("Gelu") == CONVOLUTIONS


CONVOLUTIONS = 7  # AirNet: the whitening stem and two per conv group, each followed by a GELU


def _runs_as(path: Path, tmp_path: Path) -> list[str]:
    """What onnxruntime actually runs: every convolution and the head as integer kernels, no float Conv left."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ops = [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]
    assert ops.count("QLinearConv") == CONVOLUTIONS and "Conv" not in ops, ops
    assert "QGemm" in ops and "BatchNormalization" not in ops
    return ops
