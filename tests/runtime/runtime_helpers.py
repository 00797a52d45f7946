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


# ---------------------------------------------------------------------------------------------------------------
# Input forms: the same network built in both forms. Float form: normalised float32 NCHW ``images`` in, ``logits``
# out (what the runtime normalises for). Pixel form: uint8 NHWC ``pixels`` of any size in -> Resize to the contract
# size (ONNX's Pillow-matching antialiased bilinear) -> float -> (x - 255 mean) / (255 std) -> NCHW -> the same
# network -> ``probabilities`` (softmax) and ``logits`` out.

PIXEL_OPSET = 18  # Resize's antialias attribute


def _pixel_front(contract: Contract, output: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    arrays = {
        "sizes": np.asarray(contract.image_size, np.int64),
        "mean255": (np.asarray(contract.mean, np.float32) * 255).reshape(1, 1, 1, 3),
        "std255": (np.asarray(contract.std, np.float32) * 255).reshape(1, 1, 1, 3),
    }
    nodes = [
        helper.make_node(
            "Resize",
            [contract.input_name, "", "", "sizes"],
            ["resized"],
            mode="linear",
            antialias=1,
            exclude_outside=1,
            coordinate_transformation_mode="half_pixel",
            axes=[1, 2],
        ),
        helper.make_node("Cast", ["resized"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["as_float", "mean255"], ["centred"]),
        helper.make_node("Div", ["centred", "std255"], ["nhwc"]),
        helper.make_node("Transpose", ["nhwc"], [output], perm=[0, 3, 1, 2]),
    ]
    return nodes, [numpy_helper.from_array(value, name) for name, value in arrays.items()]


def _network(body: str, classes: int, source: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """``source`` (normalised float NCHW) -> "logits". "conv": conv (padded) > relu > pool > gemm, seeded weights;
    "colour": the colour model's mean colour > matmul, for contracts with mean 0 and std 1."""
    if body == "colour":
        weights = np.zeros((3, classes), dtype=np.float32)
        for index in range(classes):
            weights[index % 3, index] = 10.0
        arrays = {"axes": np.array([2, 3], np.int64), "weights": weights, "bias": np.linspace(0, 0.01, classes)}
        nodes = [
            helper.make_node("ReduceMean", [source, "axes"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "weights"], ["scores"]),
            helper.make_node("Add", ["scores", "bias"], ["logits"]),
        ]
    else:
        rng = np.random.default_rng(0)
        arrays = {
            "conv_w": rng.normal(0, 0.4, (16, 3, 3, 3)),
            "conv_b": rng.normal(0, 0.1, (16,)),
            "fc_w": rng.normal(0, 1.0, (classes, 16)),
            "fc_b": rng.normal(0, 0.1, (classes,)),
        }
        nodes = [
            helper.make_node("Conv", [source, "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1], strides=[2, 2]),
            helper.make_node("Relu", ["conv"], ["relu"]),
            helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
            helper.make_node("Flatten", ["pool"], ["features"]),
            helper.make_node("Gemm", ["features", "fc_w", "fc_b"], ["logits"], transB=1),
        ]
    initializers = [
        numpy_helper.from_array(value if value.dtype == np.int64 else value.astype(np.float32), name)
        for name, value in arrays.items()
    ]
    return nodes, initializers


def build_form_model(
    contract: Contract,
    body: str = "conv",
    *,
    metadata: dict[str, str] | None = None,
    batch_dim: int | str = "batch",
) -> onnx.ModelProto:
    """The ``body`` network in ``contract``'s input form, with ``contract`` in its metadata (``metadata`` may
    replace it, e.g. with another form's contract, to make a file whose contract and graph disagree)."""
    classes = contract.num_classes
    if contract.takes_pixels:
        nodes, initializers = _pixel_front(contract, "normalised")
        source = "normalised"
        graph_input = helper.make_tensor_value_info(
            contract.input_name, TensorProto.UINT8, [batch_dim, "height", "width", 3]
        )
    else:
        nodes, initializers, source = [], [], contract.input_name
        height, width = contract.image_size
        graph_input = helper.make_tensor_value_info(source, TensorProto.FLOAT, [batch_dim, 3, height, width])
    body_nodes, body_initializers = _network(body, classes, source)
    nodes += body_nodes
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch_dim, classes])]
    if contract.takes_pixels:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1))
        outputs.insert(0, helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch_dim, classes]))
    graph = helper.make_graph(
        nodes, f"{body}_{contract.input_form}", [graph_input], outputs, initializers + body_initializers
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", PIXEL_OPSET)], ir_version=9)
    entries = {CONTRACT_METADATA_KEY: contract.to_json(), **(metadata or {})}
    helper.set_model_props(model, entries)
    onnx.checker.check_model(model, full_check=True)
    return model


def write_mode_images(folder: Path) -> dict[str, Path]:
    """Real image files of several sizes and modes, as users have them: {name: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:40, 0:64]
    gradient = np.dstack([xx * 4, yy * 6, (xx + yy) * 2]).clip(0, 255).astype(np.uint8)
    alpha = np.tile(np.linspace(0, 255, 45).astype(np.uint8), (37, 1))
    images: dict[str, tuple[Image.Image, dict]] = {
        "rgb_32.png": (Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)), {}),
        "rgba.png": (Image.fromarray(np.dstack([rng.integers(0, 256, (37, 45, 3), dtype=np.uint8), alpha])), {}),
        "palette.png": (
            Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)).quantize(16),
            {"transparency": 3},
        ),
        "grey.png": (Image.fromarray(gradient[..., 1]), {}),
        "grey_alpha.png": (Image.fromarray(rng.integers(0, 256, (20, 40, 2), dtype=np.uint8), "LA"), {}),
        "grey16.png": (Image.fromarray(gradient[..., 0].astype(np.uint16) * 257), {}),
        "large.jpg": (Image.fromarray(gradient).resize((150, 97)), {"quality": 90}),
        "cmyk.jpg": (Image.fromarray(gradient).convert("CMYK"), {"quality": 95}),
    }
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display: decoded 40 wide, 64 high
    images["exif_rotated.jpg"] = (Image.fromarray(gradient), {"exif": exif.tobytes(), "quality": 92})
    paths = {}
    for name, (image, params) in images.items():
        image.save(folder / name, **params)
        paths[name] = folder / name
    return paths
