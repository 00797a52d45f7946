"""The pixel input form: a float-form ONNX graph with the preprocessing in front of it and softmax behind it.

``to_pixel_form`` takes what an ONNX row's writer made (input: float32 NCHW ``(pixel / 255 - mean) / std``, output:
``logits``) and returns a graph that takes raw ``pixels``: uint8 ``[batch, height, width, 3]`` RGB of any size, and
returns ``probabilities`` (softmax) and ``logits``. The prefix, in standard ONNX ops only (onnxruntime-web runs it):

1. ``Resize`` to the contract's size: opset 18's antialiased linear resize with ``exclude_outside=1`` and
   ``half_pixel`` coordinates, the setting that reproduces Pillow's bilinear filter within 1 LSB (onnxruntime
   1.32). On an image already at the contract size it is an exact identity in onnxruntime (tested), so it is not
   made conditional: the graph stays one plain chain that every runtime and tool reads.
2. ``Transpose`` to NCHW (on uint8: a quarter of the bytes), ``Cast`` to float32.
3. The normalisation, folded into the first convolution where that is exact (``fold_normalisation``), else as
   ``Div(255)``, ``Sub(mean)``, ``Div(std)``: the runtime's numpy steps in the same order, bit for bit.

The graph behind it is untouched: fp16 keeps its own Cast to half precision, int8 its QuantizeLinear.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cifar_edge.export.config import ExportFailedError, ExportUsageError
from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.contract import PIXEL_EXACT_RESIZE, Contract

PROBABILITIES = "probabilities"
# Resize with ``antialias`` and ``axes`` is opset 18's.
MIN_PIXEL_OPSET = 18
# The symbolic axes of the pixel input (the float form's batch axis keeps its exporter name).
PIXEL_AXES = ("batch", "height", "width")
# ONNX Resize attributes that match Pillow's bilinear resize (docs/export.md, "Input forms").
RESIZE_ATTRIBUTES = {
    "mode": "linear",
    "antialias": 1,
    "exclude_outside": 1,
    "coordinate_transformation_mode": "half_pixel",
}
_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)
_SPATIAL_AXES = {2, 3, -1, -2}  # NCHW: an op along these axes alone moves pixels, never mixes channels


def pixel_contract(contract: Contract) -> Contract:
    """The run's contract in the pixel form; ExportUsageError (one line) when the graph cannot resize exactly."""
    if contract.resize_method not in PIXEL_EXACT_RESIZE:
        exact = " or ".join(PIXEL_EXACT_RESIZE)
        raise ExportUsageError(
            f"the run's contract resizes with {contract.resize_method!r}, which an ONNX graph does not reproduce "
            f"exactly (only {exact}): pass --input float"
        )
    return contract.pixel_form()


def to_pixel_form(float_model: onnx.ModelProto, contract: Contract) -> onnx.ModelProto:
    """The pixel-form copy of ``float_model`` (whose input is ``contract.input_name``), checked and shape-inferred."""
    target = pixel_contract(contract)
    model = onnx.ModelProto()
    model.CopyFrom(float_model)
    opset = _default_opset(model)
    if opset < MIN_PIXEL_OPSET:
        raise ExportFailedError(f"the pixel input form needs opset >= {MIN_PIXEL_OPSET}, the graph has {opset}")
    graph = model.graph
    float_input = next((value for value in graph.input if value.name == contract.input_name), None)
    if float_input is None or contract.output_name not in {value.name for value in graph.output}:
        raise ExportFailedError(f"the graph has no input {contract.input_name!r} or output {contract.output_name!r}")
    names = _Names(model)
    prefix, initializers = _prefix(names, contract, folded=fold_normalisation(graph, contract))
    graph.input.remove(float_input)
    graph.value_info.append(float_input)  # now an inner tensor: its known shape stays
    graph.input.insert(0, helper.make_tensor_value_info(target.input_name, TensorProto.UINT8, [*PIXEL_AXES, 3]))
    nodes = [*prefix, *graph.node, helper.make_node("Softmax", [contract.output_name], [PROBABILITIES], axis=-1)]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    logits = next(value for value in graph.output if value.name == contract.output_name)
    probabilities = onnx.ValueInfoProto()
    probabilities.CopyFrom(logits)
    probabilities.name = PROBABILITIES
    probabilities.ClearField("metadata_props")
    graph.output.insert(0, probabilities)
    return _checked(model)


def _prefix(names: _Names, contract: Contract, *, folded: bool) -> tuple[list[onnx.NodeProto], list[TensorProto]]:
    """pixels -> Resize -> Transpose -> Cast [-> Div, Sub, Div] -> the float graph's input."""
    sizes = names.new("pixels_size")
    resized, planar = names.new("pixels_resized"), names.new("pixels_planar")
    nchw = contract.input_name if folded else names.new("pixels_nchw")
    nodes = [
        resize_node(contract.pixel_form().input_name, resized, sizes),
        # Transposing uint8 moves a quarter of the bytes float32 would: the model-only speed of the float form.
        helper.make_node("Transpose", [resized], [planar], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", [planar], [nchw], to=TensorProto.FLOAT),
    ]
    initializers = [numpy_helper.from_array(np.asarray(contract.image_size, np.int64), sizes)]
    if not folded:
        scale, mean, std = names.new("pixels_255"), names.new("pixels_mean"), names.new("pixels_std")
        scaled, centred = names.new("pixels_scaled"), names.new("pixels_centred")
        nodes += [
            helper.make_node("Div", [nchw, scale], [scaled]),
            helper.make_node("Sub", [scaled, mean], [centred]),
            helper.make_node("Div", [centred, std], [contract.input_name]),
        ]
        initializers += [
            numpy_helper.from_array(np.asarray(255.0, np.float32), scale),
            numpy_helper.from_array(np.asarray(contract.mean, np.float32).reshape(1, 3, 1, 1), mean),
            numpy_helper.from_array(np.asarray(contract.std, np.float32).reshape(1, 3, 1, 1), std),
        ]
    return nodes, initializers


def resize_node(source: str, target: str, sizes: str) -> onnx.NodeProto:
    """uint8 NHWC ``source`` -> ``target`` at the (height, width) in the int64 tensor ``sizes``, Pillow's way."""
    return helper.make_node("Resize", [source, "", "", sizes], [target], axes=[1, 2], **RESIZE_ATTRIBUTES)


def resize_probe(model: onnx.ModelProto) -> onnx.ModelProto:
    """The Resize a pixel-form ``model`` applies to its input, alone: ``pixels`` -> resized uint8 pixels. The parity
    gate runs it against Pillow, so what it checks is the file's own node, attributes and all."""
    graph = model.graph
    pixels = graph.input[0]
    node = next((node for node in graph.node if node.op_type == "Resize" and node.input[0] == pixels.name), None)
    if node is None:
        raise ExportFailedError(f"the graph has no Resize on its input {pixels.name!r}")
    constants = [init for init in graph.initializer if init.name in set(node.input[1:])]
    output = helper.make_tensor_value_info(node.output[0], TensorProto.UINT8, [PIXEL_AXES[0], None, None, 3])
    probe = helper.make_graph([node], "resize_probe", [pixels], [output], initializer=constants)
    return helper.make_model(probe, opset_imports=[helper.make_opsetid("", _default_opset(model))])


def fold_normalisation(graph: onnx.GraphProto, contract: Contract) -> bool:
    """Fold ``(x / 255 - mean) / std`` into the convolutions that first read the input; False (graph untouched)
    when that is not exact.

    Exact when every path from the input reaches a convolution without padding (AirNet's whitening stem), through
    ops that commute with a per-channel affine map: spatial Slices (TTA's flip and shifts), reflect/edge Pads (the
    shifts' borders), float Casts (fp16's input cast). A zero-padded convolution (the tutorial net's) is not: its
    zeros would stand for a different value after folding. Weights shared by TTA views are folded once.
    """
    convolutions = _first_convolutions(graph, contract.input_name)
    if not convolutions:
        return False
    initializers = {init.name: init for init in graph.initializer}
    pairs = {node.input[1]: node.input[2] if len(node.input) > 2 and node.input[2] else None for node in convolutions}
    if len(pairs) != len({(node.input[1], *node.input[2:]) for node in convolutions}):
        return False  # one weight with two different biases
    biases = [bias for bias in pairs.values() if bias is not None]
    ours = {id(node) for node in convolutions}
    shared = {name for node in graph.node if id(node) not in ours for name in node.input}
    if len(set(biases)) != len(biases) or shared & {*pairs, *biases}:
        return False  # a weight or bias also used elsewhere (or two weights sharing a bias): leave it
    mean, std = np.asarray(contract.mean, np.float64), np.asarray(contract.std, np.float64)
    for weight_name, bias_name in pairs.items():
        weight = initializers[weight_name]
        values = numpy_helper.to_array(weight).astype(np.float64)
        dtype = numpy_helper.to_array(weight).dtype
        bias = np.zeros(values.shape[0]) if bias_name is None else numpy_helper.to_array(initializers[bias_name])
        shift = (values * (mean / std).reshape(1, 3, 1, 1)).sum(axis=(1, 2, 3))
        weight.CopyFrom(
            numpy_helper.from_array((values / (255.0 * std).reshape(1, 3, 1, 1)).astype(dtype), weight_name)
        )
        folded_bias = (bias.astype(np.float64) - shift).astype(dtype)
        if bias_name is None:
            bias_name = f"{weight_name}.folded_bias"
            graph.initializer.append(numpy_helper.from_array(folded_bias, bias_name))
            for node in convolutions:
                if node.input[1] == weight_name:
                    del node.input[2:]
                    node.input.append(bias_name)
        else:
            initializers[bias_name].CopyFrom(numpy_helper.from_array(folded_bias, bias_name))
    return True


def _first_convolutions(graph: onnx.GraphProto, source: str) -> list[onnx.NodeProto]:
    """The convolutions every path from ``source`` reaches through commuting ops; [] when some path does not."""
    initializers = {init.name: init for init in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in dict.fromkeys(node.input):
            consumers.setdefault(name, []).append(node)
    outputs = {value.name for value in graph.output}
    found: list[onnx.NodeProto] = []
    pending = [source]
    while pending:
        tensor = pending.pop()
        if tensor in outputs or not consumers.get(tensor):
            return []
        for node in consumers[tensor]:
            if node.op_type == "Conv" and list(node.input).index(tensor) == 0 and _plain_conv(node, initializers):
                found.append(node)
            elif list(node.input).index(tensor) == 0 and _commutes(node, initializers):
                pending.append(node.output[0])
            else:
                return []
    return found


def _plain_conv(node: onnx.NodeProto, initializers: dict[str, TensorProto]) -> bool:
    """A convolution of the 3 input channels with constant float weights and no padding."""
    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    weight = initializers.get(node.input[1])
    bias = node.input[2] if len(node.input) > 2 else ""
    return (
        attributes.get("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID")
        and not any(attributes.get("pads", []))
        and attributes.get("group", 1) == 1
        and weight is not None
        and weight.data_type in _FLOAT_TYPES
        and len(weight.dims) == 4
        and weight.dims[1] == 3
        and (not bias or bias in initializers)
    )


def _commutes(node: onnx.NodeProto, initializers: dict[str, TensorProto]) -> bool:
    """Whether ``node`` (on its first input) commutes with a per-channel affine map of NCHW input."""
    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}

    def constant(position: int) -> list[int] | None:
        name = node.input[position] if len(node.input) > position else ""
        return [int(v) for v in numpy_helper.to_array(initializers[name]).ravel()] if name in initializers else None

    if node.op_type == "Identity":
        return True
    if node.op_type == "Cast":
        return attributes.get("to") in _FLOAT_TYPES
    if node.op_type == "Slice":
        axes = constant(3)
        return axes is not None and set(axes) <= _SPATIAL_AXES
    if node.op_type == "Pad":
        pads = constant(1)
        axes = constant(3) if len(node.input) > 3 and node.input[3] else [0, 1, 2, 3]
        if pads is None or axes is None or attributes.get("mode") not in (b"reflect", b"edge"):
            return False
        moved = {axis for axis, before, after in zip(axes, pads, pads[len(axes) :], strict=False) if before or after}
        return moved <= {2, 3, -1, -2}
    return False


def _default_opset(model: onnx.ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)


class _Names:
    """Tensor names not yet used in a model."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.used = {name for node in graph.node for name in (*node.input, *node.output)}
        self.used |= {value.name for value in (*graph.input, *graph.output, *graph.initializer)}

    def new(self, base: str) -> str:
        name, number = base, 1
        while name in self.used:
            name, number = f"{base}_{number}", number + 1
        self.used.add(name)
        return name


def _checked(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with inferred shapes, after onnx.checker; ExportFailedError with one line when either fails."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        onnx.checker.check_model(inferred, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportFailedError(f"the pixel-form graph does not validate: {first_line(error)}") from None
    return inferred
