"""GELU in int8: the quantizer's Dequantize -> Gelu -> Quantize becomes onnxruntime's int8 kernels.

onnxruntime has no int8 GELU, so after quantization every GELU runs in float between a DequantizeLinear and a
QuantizeLinear: three passes over each activation tensor. The sigmoid form of GELU, x * sigmoid(1.702 x) (Hendrycks
and Gimpel, "Gaussian Error Linear Units"), runs on two int8 kernels from onnxruntime's contrib domain:
QLinearSigmoid (a 256-entry lookup table) and QLinearMul. The 1.702 is folded into the sigmoid's input scale, so
both read the same quantized tensor. Activations must be uint8 here: onnxruntime's x86 kernels turn int8 Q/DQ pairs
into uint8 ones, which a QuantizeLinear that feeds a contrib op instead of a DequantizeLinear would escape.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

CONTRIB_DOMAIN = "com.microsoft"
# GELU(x) ~ x * sigmoid(SIGMOID_GELU_ALPHA * x): the constant of the sigmoid approximation.
SIGMOID_GELU_ALPHA = 1.702
# The sigmoid's output spans [0, 1]: uint8 with scale 1/255 and zero point 0 uses every code.
_SIGMOID_SCALE = np.float32(1 / 255)
_SIGMOID_ZERO_POINT = np.uint8(0)


def gelu_to_int8(model: onnx.ModelProto) -> int:
    """Rewrite each per-tensor uint8 ``DequantizeLinear -> Gelu -> QuantizeLinear`` in place; return how many."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    replaced: dict[int, list[onnx.NodeProto]] = {}  # id(Gelu) -> the nodes that take its place
    dropped: set[int] = set()
    shapes = _inferred_shapes(model)
    for gelu in graph.node:
        chain = _quantized_chain(gelu, producer, consumers, initializers)
        if chain is None:
            continue
        dequantize, quantize, scale = chain
        replaced[id(gelu)] = _sigmoid_gelu_nodes(graph, gelu, dequantize, quantize, scale)
        _declare_shapes(graph, [node.output[0] for node in replaced[id(gelu)]], shapes.get(gelu.input[0]))
        dropped.add(id(quantize))
        if len(consumers[dequantize.output[0]]) == 1:
            dropped.add(id(dequantize))
    if not replaced:
        return 0
    # The new nodes take the Gelu's place: their inputs exist by then, and every reader of the old Quantize follows.
    nodes = []
    for node in graph.node:
        if id(node) in replaced:
            nodes.extend(replaced[id(node)])
        elif id(node) not in dropped:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(opset.domain == CONTRIB_DOMAIN for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid(CONTRIB_DOMAIN, 1))
    return len(replaced)


def _inferred_shapes(model: onnx.ModelProto) -> dict[str, onnx.TensorShapeProto]:
    """Each tensor's shape as ONNX shape inference sees it before the rewrite."""
    inferred = shape_inference.infer_shapes(model).graph
    values = [*inferred.input, *inferred.value_info, *inferred.output]
    return {value.name: value.type.tensor_type.shape for value in values if value.type.tensor_type.HasField("shape")}


def _declare_shapes(graph: onnx.GraphProto, names: list[str], shape: onnx.TensorShapeProto | None) -> None:
    """Record the new uint8 tensors' shape: ONNX shape inference cannot see through contrib ops, FLOP counts
    and graph viewers downstream need it."""
    if shape is None:
        return
    kept = [value for value in graph.value_info if value.name not in names]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    for name in names:
        value = helper.make_tensor_value_info(name, onnx.TensorProto.UINT8, None)
        value.type.tensor_type.shape.CopyFrom(shape)
        graph.value_info.append(value)


def _quantized_chain(
    gelu: onnx.NodeProto,
    producer: dict[str, onnx.NodeProto],
    consumers: dict[str, list[onnx.NodeProto]],
    initializers: dict[str, onnx.TensorProto],
) -> tuple[onnx.NodeProto, onnx.NodeProto, np.ndarray] | None:
    """The Dequantize before and the only Quantize after ``gelu``, with a per-tensor uint8 input; else None."""
    if gelu.op_type != "Gelu" or gelu.domain not in ("", "ai.onnx"):
        return None
    dequantize = producer.get(gelu.input[0])
    readers = consumers.get(gelu.output[0], [])
    if dequantize is None or dequantize.op_type != "DequantizeLinear" or len(dequantize.input) < 3:
        return None
    if len(readers) != 1 or readers[0].op_type != "QuantizeLinear" or len(readers[0].input) < 3:
        return None
    scale, zero_point, output_zero_point = (
        initializers.get(name) for name in (*dequantize.input[1:3], readers[0].input[2])
    )
    uint8 = onnx.TensorProto.UINT8
    if scale is None or any(point is None or point.data_type != uint8 for point in (zero_point, output_zero_point)):
        return None
    scale_value = numpy_helper.to_array(scale)
    if scale_value.size != 1:
        return None
    return dequantize, readers[0], scale_value


def _sigmoid_gelu_nodes(
    graph: onnx.GraphProto,
    gelu: onnx.NodeProto,
    dequantize: onnx.NodeProto,
    quantize: onnx.NodeProto,
    scale: np.ndarray,
) -> list[onnx.NodeProto]:
    """QLinearSigmoid(1.702 x) and QLinearMul(x, it) writing the old Quantize's output, with their constants."""
    quantized, x_scale, x_zero_point = dequantize.input[:3]
    tag = gelu.name or gelu.output[0]
    names = {key: f"{tag}/sigmoid_{key}" for key in ("input_scale", "scale", "zero_point", "output")}
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.asarray(scale * SIGMOID_GELU_ALPHA, np.float32), names["input_scale"]),
            numpy_helper.from_array(np.asarray(_SIGMOID_SCALE), names["scale"]),
            numpy_helper.from_array(np.asarray(_SIGMOID_ZERO_POINT), names["zero_point"]),
        ]
    )
    sigmoid_inputs = [quantized, names["input_scale"], x_zero_point, names["scale"], names["zero_point"]]
    product_inputs = [quantized, x_scale, x_zero_point, names["output"], names["scale"], names["zero_point"]]
    return [
        helper.make_node(
            "QLinearSigmoid", sigmoid_inputs, [names["output"]], name=f"{tag}/sigmoid", domain=CONTRIB_DOMAIN
        ),
        helper.make_node(
            "QLinearMul",
            [*product_inputs, *quantize.input[1:3]],
            [quantize.output[0]],
            name=f"{tag}/product",
            domain=CONTRIB_DOMAIN,
        ),
    ]
