"""GELU onto int8 kernels: which chains are rewritten, and that the result computes GELU on quantized tensors."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from cifar_edge.export.formats.int8_gelu import CONTRIB_DOMAIN, gelu_to_int8

X_SCALE, Y_SCALE = 0.05, 0.04  # x codes span [-6.4, 6.35]; GELU's outputs [-0.17, 6.35] fit y's range


def _chain(zero_point_type: int = TensorProto.UINT8, x_scale: np.ndarray | None = None) -> onnx.ModelProto:
    """x -> DequantizeLinear -> Gelu -> QuantizeLinear -> DequantizeLinear -> y, as the quantizer writes it."""
    numpy_type = np.uint8 if zero_point_type == TensorProto.UINT8 else np.int8
    x_zero, y_zero = (128, 5) if numpy_type is np.uint8 else (0, -123)
    initializers = [
        numpy_helper.from_array(np.asarray(X_SCALE if x_scale is None else x_scale, np.float32), "xs"),
        numpy_helper.from_array(np.asarray(x_zero, numpy_type), "xz"),
        numpy_helper.from_array(np.asarray(Y_SCALE, np.float32), "ys"),
        numpy_helper.from_array(np.asarray(y_zero, numpy_type), "yz"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["x"], name="dq"),
        helper.make_node("Gelu", ["x"], ["g"], name="gelu"),
        helper.make_node("QuantizeLinear", ["g", "ys", "yz"], ["gq"], name="q"),
        helper.make_node("DequantizeLinear", ["gq", "ys", "yz"], ["y"], name="dq_out"),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("xq", zero_point_type, [1, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def _run(model: onnx.ModelProto, codes: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"xq": codes})[0]


def test_the_chain_becomes_int8_sigmoid_and_product() -> None:
    model = _chain()
    assert gelu_to_int8(model) == 1
    ops = [(node.domain, node.op_type) for node in model.graph.node]
    assert ops == [(CONTRIB_DOMAIN, "QLinearSigmoid"), (CONTRIB_DOMAIN, "QLinearMul"), ("", "DequantizeLinear")]
    assert any(opset.domain == CONTRIB_DOMAIN for opset in model.opset_import)
    onnx.checker.check_model(model, full_check=True)


def test_every_code_lands_within_a_step_of_exact_gelu() -> None:
    codes = np.arange(256, dtype=np.uint8).reshape(1, 256)
    exact = _run(_chain(), codes)
    model = _chain()
    gelu_to_int8(model)
    rewritten = _run(model, codes)
    x = (codes.astype(np.float64) - 128) * X_SCALE
    gelu = np.array([[v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x[0]]])
    # Exact GELU through Q/DQ is within half a step; the sigmoid form adds its own error (< 0.021) and one rounding.
    assert np.max(np.abs(exact - gelu)) <= Y_SCALE / 2 + 1e-6
    assert np.max(np.abs(rewritten - gelu)) <= 0.021 + Y_SCALE
    assert np.mean(np.abs(rewritten - exact)) < Y_SCALE / 2


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(_chain(TensorProto.INT8), id="int8 activations"),
        pytest.param(_chain(x_scale=np.array([X_SCALE, X_SCALE], np.float32)), id="per-channel input scale"),
    ],
)
def test_chains_the_kernels_cannot_take_are_left_alone(model: onnx.ModelProto) -> None:
    before = model.SerializeToString()
    assert gelu_to_int8(model) == 0
    assert model.SerializeToString() == before


def test_a_gelu_read_twice_is_left_alone() -> None:
    model = _chain()
    model.graph.output.append(helper.make_tensor_value_info("g", TensorProto.FLOAT, [1, 256]))
    model.graph.node.append(helper.make_node("Identity", ["g"], ["g_copy"]))
    assert gelu_to_int8(model) == 0
