"""FLOPs per image of an ONNX graph, counted from its nodes after ONNX shape inference.

The main figure counts multiply-accumulates x 2 of the compute-bound ops (Conv, ConvTranspose, Gemm, MatMul and
their integer forms: QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger, QGemm); bias adds are left out, the
usual convention. Integer ops are "ops", not floating-point operations: they are in the main figure (so a row of
any format has one) and also reported on their own. A QDQ model's QuantizeLinear/DequantizeLinear wrap float Conv
nodes, which count like any Conv. Elementwise work (activations, adds, pooling windows) is counted separately and
never mixed into the main figure. Every node in the graph counts, so test-time augmentation baked into the graph
(six passes of the network) gives six times the FLOPs of one pass without any knowledge of TTA.
"""

from __future__ import annotations

import math
from typing import Any

import onnx
from onnx import shape_inference

# op type -> the input holding the weight (convolutions) or the left operand (matrix products)
_CONV_WEIGHT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}
_MATMUL_A = {"MatMul": 0, "MatMulInteger": 0, "QLinearMatMul": 0}
_GEMM_A = {"Gemm": 0, "QGemm": 0}
_COMPUTE = frozenset({*_CONV_WEIGHT, *_MATMUL_A, *_GEMM_A, "ConvTranspose"})
INTEGER_OPS = frozenset({"ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul", "QGemm"})
# One operation per output element: cheap next to the convolutions, reported apart from them.
_ELEMENTWISE = frozenset(
    {"Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Gelu", "Erf", "HardSigmoid"}
    | {"HardSwish", "Max", "Min", "Neg", "Abs", "Sqrt", "Exp", "Pow", "Softmax", "BatchNormalization"}
)
_WINDOWED = frozenset({"MaxPool", "AveragePool"})
_REDUCING = frozenset({"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "ReduceSum"})


def _with_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """A copy whose graph inputs have their first axis fixed to ``batch`` (shape inference then gives numbers).

    Declared shapes naming the same symbolic axis get it too: shape inference cannot refine the declared outputs
    of ops it does not know (onnxruntime's contrib ops), so they would keep the symbol."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    if fixed.functions:  # exporters may wrap layers in local functions: count their nodes in the main graph
        from onnx import inliner

        fixed = inliner.inline_local_functions(fixed)
    initializers = {tensor.name for tensor in fixed.graph.initializer}
    symbols = set()
    for value in fixed.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name not in initializers and len(dims) > 0:
            if dims[0].HasField("dim_param"):
                symbols.add(dims[0].dim_param)
            dims[0].Clear()
            dims[0].dim_value = batch
    for value in [*fixed.graph.value_info, *fixed.graph.output]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in symbols:
                dim.Clear()
                dim.dim_value = batch
    return fixed


def _shapes(graph: onnx.GraphProto) -> dict[str, tuple[int | None, ...]]:
    """Every known tensor shape; None for an axis shape inference could not resolve."""
    shapes: dict[str, tuple[int | None, ...]] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        if tensor_type.HasField("shape"):
            dims = tensor_type.shape.dim
            shapes[value.name] = tuple(dim.dim_value if dim.HasField("dim_value") else None for dim in dims)
    for tensor in graph.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
    return shapes


def _known(shape: tuple[int | None, ...] | None) -> tuple[int, ...] | None:
    if shape is None or any(dim is None for dim in shape):
        return None
    return tuple(int(dim) for dim in shape)  # type: ignore[arg-type]


def _attribute(node: onnx.NodeProto, name: str, default: Any) -> Any:
    found = next((attribute for attribute in node.attribute if attribute.name == name), None)
    return default if found is None else onnx.helper.get_attribute_value(found)


def _mac_flops(node: onnx.NodeProto, shapes: dict[str, tuple[int | None, ...]]) -> int | None:
    """2 x multiply-accumulates of one compute-bound node; None when a shape it needs is unknown."""
    out = _known(shapes.get(node.output[0]))
    op = node.op_type
    if op in _CONV_WEIGHT:
        weight = _known(shapes.get(node.input[_CONV_WEIGHT[op]]))
        # weight (Cout, Cin/group, kh, kw): each output element takes Cin/group x kh x kw products
        return None if out is None or weight is None else 2 * math.prod(out) * math.prod(weight[1:])
    if op == "ConvTranspose":
        source, weight = _known(shapes.get(node.input[0])), _known(shapes.get(node.input[1]))
        # weight (Cin, Cout/group, kh, kw): each input element is scattered into Cout/group x kh x kw outputs
        return None if source is None or weight is None else 2 * math.prod(source) * math.prod(weight[1:])
    if op in _MATMUL_A:
        left = _known(shapes.get(node.input[_MATMUL_A[op]]))
        return None if out is None or left is None else 2 * math.prod(out) * left[-1]
    left = _known(shapes.get(node.input[_GEMM_A[op]]))
    if out is None or left is None:
        return None
    depth = left[0] if _attribute(node, "transA", 0) else left[-1]
    return 2 * math.prod(out) * depth


def _elementwise_ops(node: onnx.NodeProto, shapes: dict[str, tuple[int | None, ...]]) -> int | None:
    op = node.op_type
    if op in _REDUCING:
        source = _known(shapes.get(node.input[0]))
        return None if source is None else math.prod(source)
    out = _known(shapes.get(node.output[0]))
    if out is None:
        return None
    if op in _WINDOWED:
        return math.prod(out) * math.prod(_attribute(node, "kernel_shape", [1]))
    return math.prod(out)


def count_flops(model: onnx.ModelProto, batch: int = 1) -> dict[str, Any]:
    """FLOPs of ``model`` per image: main figure and per-op-type breakdown in MFLOP, elementwise apart.

    Nodes whose shapes stay unknown after shape inference are listed under ``uncounted`` (the figure is then a
    lower bound). ``batch`` only sets the batch the graph is inferred at; every figure is per image.
    """
    inferred = shape_inference.infer_shapes(_with_batch(model, batch), data_prop=True)
    shapes = _shapes(inferred.graph)
    by_op: dict[str, int] = {}
    elementwise_total = 0
    uncounted: list[str] = []
    for node in inferred.graph.node:
        if node.op_type in _COMPUTE:
            counted = _mac_flops(node, shapes)
        elif node.op_type in _ELEMENTWISE | _WINDOWED | _REDUCING:
            counted = _elementwise_ops(node, shapes)
            elementwise_total += counted or 0
            if counted is not None:
                continue
        else:
            continue
        if counted is None:
            uncounted.append(node.name or node.op_type)
        else:
            by_op[node.op_type] = by_op.get(node.op_type, 0) + counted
    integer_total = sum(value for op, value in by_op.items() if op in INTEGER_OPS)

    def mega(value: int) -> float:
        return round(value / batch / 1e6, 6)

    return {
        "mflop_per_image": mega(sum(by_op.values())),
        "by_op_type": {op: mega(value) for op, value in sorted(by_op.items())},
        "integer_mops_per_image": mega(integer_total),
        "elementwise_mops_per_image": mega(elementwise_total),
        "uncounted": uncounted,
        "batch": batch,
    }
