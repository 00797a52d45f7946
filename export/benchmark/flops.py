"""FLOPs per image of an ONNX graph, counted from its nodes after ONNX shape inference, and the efficiency columns
of ``cifar-bench`` built on them (FLOPs per image, achieved GFLOP/s and the share of this machine's peak).

The main figure counts multiply-accumulates x 2 of the compute-bound ops (Conv, ConvTranspose, Gemm, MatMul and
their integer forms: QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger, QGemm); bias adds are left out, the
usual convention. Integer ops are "ops", not floating-point operations: they are in the main figure (so a row of
any format has one) and also reported on their own. A QDQ model's QuantizeLinear/DequantizeLinear wrap float Conv
nodes, which count like any Conv. Elementwise work (activations, adds, pooling windows) is counted separately and
never mixed into the main figure. Every node in the graph counts, so test-time augmentation baked into the graph
(six passes of the network) gives six times the FLOPs of one pass without any knowledge of TTA.

Efficiency: each ONNX row's FLOPs are counted from its own graph; the other rows (eager PyTorch, the torch formats)
compute the same function, so they take the count of the run's fp32 ONNX export when there is one from the current
weights (else None). Achieved GFLOP/s = MFLOP per image x images/s at the throughput batch / 1000. The share of peak
is only given for CPU rows (the peak is measured on the CPU): fp32 and fp16 rows against the fp32 peak, int8 rows
against the int8 peak when it was measured.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import onnx
from onnx import shape_inference

from cifar_edge.export.benchmark.artifacts import FP32_ONNX, Artifact, source_weights_sha256
from cifar_edge.export.benchmark.machine import measure_peak
from cifar_edge.export.formats import ONNX
from cifar_edge.runtime.common.command import first_line

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


def count_file(path: Path) -> dict[str, Any]:
    """``count_flops`` of an ONNX file, with the file named; a graph it cannot count gives None and the reason."""
    try:
        counted = count_flops(onnx.load(str(path), load_external_data=False))
    except Exception as error:  # a graph shape inference cannot follow: the row still has its other columns
        return {"file": str(path), "mflop_per_image": None, "reason": f"cannot count: {first_line(error)}"}
    return {"file": str(path), **counted}


def variant_flops(artifacts: dict[str, Artifact], run_dir: Path, weights_sha256: str) -> dict[str, dict[str, Any]]:
    """bench.json's ``flops``: the count behind each variant's ``mflop_per_image`` (which file, breakdown)."""
    fp32 = artifacts.get(FP32_ONNX.key)
    fp32_path = fp32.path if fp32 is not None else run_dir / FP32_ONNX.file_name
    fp32_current = fp32.usable if fp32 is not None else fp32_path.is_file()
    if fp32 is None and fp32_current:  # not benchmarked in this run: count it only if it has the current weights
        fp32_current = source_weights_sha256(fp32_path, FP32_ONNX) == weights_sha256
    counts: dict[str, dict[str, Any]] = {}
    for key, artifact in artifacts.items():
        if artifact.variant.artifact is not None and artifact.variant.artifact.format == ONNX:
            counts[key] = count_file(artifact.path) if artifact.usable else {"mflop_per_image": None}
        elif fp32_current:
            counts[key] = count_file(fp32_path)
        else:
            counts[key] = {"mflop_per_image": None, "reason": f"no current {FP32_ONNX.file_name} to count"}
    return counts


def peak_for(precision: str, provider: str, machine_peak: dict[str, Any]) -> float | None:
    """The peak a row is compared against; None for non-CPU rows and unmeasured peaks."""
    if provider != "cpu":
        return None
    return machine_peak["int8" if precision == "int8" else "fp32"].get("gflops")


def fill_efficiency(rows: list[Any], flops: dict[str, dict[str, Any]], machine_peak: dict[str, Any]) -> None:
    """Set each row's mflop_per_image, gflops, peak_gflops and percent_of_peak (None where not measurable)."""
    for row in rows:
        row.mflop_per_image = flops.get(row.variant, {}).get("mflop_per_image")
        row.peak_gflops = peak_for(row.precision, row.provider, machine_peak)
        if row.mflop_per_image is None or row.throughput_ips is None:
            continue
        gflops = row.mflop_per_image * row.throughput_ips / 1000.0
        row.gflops = round(gflops, 4)
        if row.peak_gflops:
            row.percent_of_peak = round(100.0 * gflops / row.peak_gflops, 3)


def add_efficiency(
    rows: list[Any], artifacts: dict[str, Artifact], run_dir: Path, weights_sha256: str, threads: int
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Measure the machine peak, count every variant's FLOPs and fill the rows; bench.json's machine_peak, flops."""
    machine_peak = measure_peak(threads)
    flops = variant_flops(artifacts, run_dir, weights_sha256)
    fill_efficiency(rows, flops, machine_peak)
    return machine_peak, flops
