"""Runtime test helpers: tiny real ONNX models built with onnx.helper (no torch), and real image files.

The colour model: logits = 10 * mean_over_pixels(input) @ I + bias, so with an unnormalised contract
(mean 0, std 1) a mostly-red image is "red", mostly-green "green", mostly-blue "blue" (tests/tiny_data.TINY_CLASSES).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from tiny_data import SHARED_CAT_PHOTO, SHARED_CIFAR_TRAIN, TINY_CLASSES  # noqa: F401  (re-exported)

from cifar_edge.runtime.contract import CONTRACT_METADATA_KEY, Contract, unnormalized_contract

OPSET = 17
IR_VERSION = 8


def build_colour_model(
    contract: Contract | None,
    *,
    metadata: dict[str, str] | None = None,
    batch_dim: int | str = "batch",
    input_name: str | None = None,
    input_type: int = TensorProto.FLOAT,
    num_outputs: int | None = None,
) -> onnx.ModelProto:
    """ReduceMean over H, W -> MatMul (3 x classes) -> Add -> logits; contract JSON in metadata_props."""
    contract_for_shapes = contract or unnormalized_contract(class_names=TINY_CLASSES)
    classes = num_outputs or contract_for_shapes.num_classes
    height, width = contract_for_shapes.image_size
    name_in = input_name or contract_for_shapes.input_name
    weights = np.zeros((3, classes), dtype=np.float32)
    for index in range(classes):
        weights[index % 3, index] = 10.0
    bias = np.linspace(0.0, 0.01, classes, dtype=np.float32)  # breaks exact ties deterministically
    nodes = []
    source = name_in
    if input_type == TensorProto.FLOAT16:
        nodes.append(helper.make_node("Cast", [name_in], ["as_float"], to=TensorProto.FLOAT))
        source = "as_float"
    nodes += [
        helper.make_node("ReduceMean", [source], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["pooled", "weights"], ["scores"]),
        helper.make_node("Add", ["scores", "bias"], [contract_for_shapes.output_name]),
    ]
    graph = helper.make_graph(
        nodes,
        "colour",
        [helper.make_tensor_value_info(name_in, input_type, [batch_dim, 3, height, width])],
        [helper.make_tensor_value_info(contract_for_shapes.output_name, TensorProto.FLOAT, [batch_dim, classes])],
        initializer=[numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    entries = dict(metadata or {})
    if contract is not None:
        entries.setdefault(CONTRACT_METADATA_KEY, contract.to_json())
    helper.set_model_props(model, entries)
    onnx.checker.check_model(model, full_check=True)
    return model


def save_model(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_colour_folder(root: Path, per_class: int, seed: int = 0) -> Path:
    """``root/<class>/<n>.png``: noisy 32x32 images whose dominant channel is their class."""
    rng = np.random.default_rng(seed)
    for class_index, name in enumerate(TINY_CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            pixels = rng.integers(0, 90, size=(32, 32, 3), dtype=np.uint8)
            pixels[..., class_index] = rng.integers(150, 256, size=(32, 32), dtype=np.uint8)
            Image.fromarray(pixels, "RGB").save(folder / f"{n:04d}.png")
    return root


def solid_image(rgb: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> Image.Image:
    return Image.new("RGB", size, rgb)
