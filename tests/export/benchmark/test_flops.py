"""The FLOP counter on tiny graphs built with onnx.helper, against counts worked out by hand."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cifar_edge.export.benchmark.flops import count_flops


def _model(nodes, inputs, output, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(name, element, shape) for name, element, shape in inputs],
        [helper.make_tensor_value_info(output, TensorProto.UNDEFINED, None)],
        [numpy_helper.from_array(array, name) for name, array in initializers],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _grouped_conv(branches: int = 1) -> onnx.ModelProto:
    """x (N, 4, 5, 5) -> Conv 4->6, 3x3, groups 2, pad 1, stride 2 -> (N, 6, 3, 3), once per branch, summed."""
    weight = ("w", np.zeros((6, 2, 3, 3), np.float32))
    nodes = [
        helper.make_node("Conv", ["x", "w"], [f"y{index}"], group=2, pads=[1, 1, 1, 1], strides=[2, 2])
        for index in range(branches)
    ]
    if branches == 2:  # a TTA-like graph: the same network on the image and on its negative, averaged
        nodes[1].input[0] = "negated"
        nodes.insert(0, helper.make_node("Neg", ["x"], ["negated"]))
        nodes.append(helper.make_node("Add", ["y0", "y1"], ["out"]))
    return _model(nodes, [("x", TensorProto.FLOAT, ["N", 4, 5, 5])], "out" if branches == 2 else "y0", [weight])


# out (1, 6, 3, 3) = 54 elements, each (4 / 2 groups) x 3 x 3 = 18 multiply-accumulates
GROUPED_CONV_FLOPS = 2 * 54 * 18


def test_grouped_padded_strided_conv() -> None:
    counted = count_flops(_grouped_conv())
    assert counted["mflop_per_image"] == pytest.approx(GROUPED_CONV_FLOPS / 1e6)
    assert counted["by_op_type"] == {"Conv": pytest.approx(GROUPED_CONV_FLOPS / 1e6)}
    assert counted["integer_mops_per_image"] == 0 and counted["uncounted"] == []


def test_per_image_whatever_the_batch_it_is_inferred_at() -> None:
    assert count_flops(_grouped_conv(), batch=4)["mflop_per_image"] == pytest.approx(GROUPED_CONV_FLOPS / 1e6)


def test_a_tta_like_graph_counts_each_pass() -> None:
    counted = count_flops(_grouped_conv(branches=2))
    assert counted["mflop_per_image"] == pytest.approx(2 * GROUPED_CONV_FLOPS / 1e6)
    # Neg on the input (100) and the Add of the branches (54): elementwise, outside the main figure
    assert counted["elementwise_mops_per_image"] == pytest.approx((100 + 54) / 1e6)


def test_gemm_with_transposed_weight() -> None:
    model = _model(
        [helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1)],
        [("a", TensorProto.FLOAT, ["N", 8])],
        "y",
        [("b", np.zeros((5, 8), np.float32)), ("c", np.zeros(5, np.float32))],
    )
    assert count_flops(model)["by_op_type"] == {"Gemm": pytest.approx(2 * 1 * 5 * 8 / 1e6)}  # 2 M N K


def test_batched_matmul() -> None:
    model = _model(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        [("a", TensorProto.FLOAT, ["N", 3, 4])],
        "y",
        [("b", np.zeros((4, 7), np.float32))],
    )
    assert count_flops(model)["mflop_per_image"] == pytest.approx(2 * 3 * 7 * 4 / 1e6)


def test_qlinearconv_counts_as_integer_ops() -> None:
    initializers = [
        ("x_scale", np.array(0.1, np.float32)),
        ("x_zero", np.array(128, np.uint8)),
        ("w", np.zeros((3, 2, 3, 3), np.int8)),
        ("w_scale", np.array(0.1, np.float32)),
        ("w_zero", np.array(0, np.int8)),
        ("y_scale", np.array(0.1, np.float32)),
        ("y_zero", np.array(128, np.uint8)),
    ]
    inputs = ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale", "y_zero"]
    model = _model(
        [helper.make_node("QLinearConv", inputs, ["y"])], [("x", TensorProto.UINT8, ["N", 2, 4, 4])], "y", initializers
    )
    counted = count_flops(model)
    expected = 2 * (3 * 2 * 2) * (2 * 3 * 3) / 1e6  # out (1, 3, 2, 2), each 2 x 3 x 3 multiply-accumulates
    assert counted["mflop_per_image"] == counted["integer_mops_per_image"] == pytest.approx(expected)
    assert list(counted["by_op_type"]) == ["QLinearConv"]


def test_qdq_conv_counts_its_float_conv() -> None:
    initializers = [
        ("scale", np.array(0.1, np.float32)),
        ("zero", np.array(0, np.int8)),
        ("w_q", np.zeros((6, 2, 3, 3), np.int8)),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "scale", "zero"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "scale", "zero"], ["w"]),
        helper.make_node("Conv", ["x_dq", "w"], ["y"], group=2, pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["y"], ["out"]),
    ]
    counted = count_flops(_model(nodes, [("x", TensorProto.FLOAT, ["N", 4, 5, 5])], "out", initializers))
    assert counted["by_op_type"] == {"Conv": pytest.approx(GROUPED_CONV_FLOPS / 1e6)}
    assert counted["integer_mops_per_image"] == 0
    assert counted["elementwise_mops_per_image"] == pytest.approx(54 / 1e6)  # the Relu, kept apart


def test_a_node_of_unknown_shape_is_listed_not_guessed() -> None:
    model = _model(
        [helper.make_node("MatMul", ["a", "b"], ["y"], name="mystery")],
        [("a", TensorProto.FLOAT, ["N", 3, "K"]), ("b", TensorProto.FLOAT, ["K", 7])],
        "y",
    )
    counted = count_flops(model)
    assert counted["uncounted"] == ["mystery"] and counted["mflop_per_image"] == 0


def test_a_conv_after_an_op_shape_inference_cannot_see_through_counts() -> None:
    """A contrib op's output shape is known only from its declared value_info, with the input's batch symbol."""
    model = _grouped_conv()
    model.graph.node[0].input[0] = "x_contrib"
    model.graph.node.insert(0, helper.make_node("Opaque", ["x"], ["x_contrib"], domain="example.contrib"))
    model.opset_import.append(helper.make_opsetid("example.contrib", 1))
    model.graph.value_info.append(helper.make_tensor_value_info("x_contrib", TensorProto.FLOAT, ["N", 4, 5, 5]))
    assert count_flops(model)["mflop_per_image"] == pytest.approx(GROUPED_CONV_FLOPS / 1e6)
