"""What the Node and browser client tests share: a stand-in pixel-form model, sample image files, the Python
reference answer (Pillow + onnxruntime, no cifar-edge import) and the skip-or-fail rule for missing tools."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
NODE_EXAMPLE = EXAMPLES / "node"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"  # real images, beside the checkout; absent in a bare one
SHARED_CIFAR_JPEG = SHARED_DATA / "cifar10-jpeg" / "train" / "cat" / "0000.jpg"
SHARED_CAT_PHOTO = SHARED_DATA / "photos" / "cat.png"
CONTRACT_KEY = "cifar_edge.contract"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# A real pixel-form export to test the clients with instead of the stand-in (e.g. before a release).
MODEL_ENV = "CIFAR_EDGE_EXAMPLES_MODEL"
PNG_TOLERANCE = 1e-5  # issue 32: lossless inputs give the same probabilities within this


def require(condition: bool, reason: str) -> None:
    """Skip (saying why) when ``condition`` is false; under CI=true a missing tool is a failure instead."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the JS client tests must run)")
    pytest.skip(reason)


# ---------------------------------------------------------------------------------------------------------------
# The stand-in model: the pixel-form interface (uint8 NHWC in, in-graph antialiased resize, softmax out) around a tiny
# fixed-weight net, until the real exporter writes such files.


def build_pixel_model(
    path: Path,
    *,
    class_names: tuple[str, ...] = CIFAR_CLASSES,
    background: tuple[int, int, int] = (255, 255, 255),
    input_form: str = "pixels",
) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    classes = len(class_names)
    arrays = {
        "sizes": np.array([32, 32], np.int64),
        "mean": (np.array([0.4914, 0.4822, 0.4465], np.float32) * 255).reshape(1, 1, 1, 3),
        "std": (np.array([0.2470, 0.2435, 0.2616], np.float32) * 255).reshape(1, 1, 1, 3),
        "conv_w": rng.normal(0, 0.4, (16, 3, 3, 3)).astype(np.float32),
        "conv_b": rng.normal(0, 0.1, (16,)).astype(np.float32),
        "fc_w": rng.normal(0, 1.0, (classes, 16)).astype(np.float32),
        "fc_b": rng.normal(0, 0.1, (classes,)).astype(np.float32),
    }
    resize = helper.make_node(
        "Resize",
        ["pixels", "", "", "sizes"],
        ["resized"],
        mode="linear",
        antialias=1,
        exclude_outside=1,
        coordinate_transformation_mode="half_pixel",
        axes=[1, 2],
    )
    nodes = [
        resize,  # uint8 in, uint8 out: rounds like Pillow's bilinear resize
        helper.make_node("Cast", ["resized"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["normalised"]),
        helper.make_node("Transpose", ["normalised"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"]),
        helper.make_node("Gemm", ["features", "fc_w", "fc_b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "stand_in_pixel_model",
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["N", "H", "W", 3])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", classes]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes]),
        ],
        [numpy_helper.from_array(value, name) for name, value in arrays.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="cifar-edge tests")
    model.ir_version = 9
    contract = {
        "class_names": list(class_names),
        "image_size": [32, 32],
        "alpha_background": list(background),
        "resize_method": "bilinear",
        "input_form": input_form,
    }
    helper.set_model_props(model, {CONTRACT_KEY: json.dumps(contract)})
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Sample images: every one is decodable by Pillow, Node's sharp and Chromium. Lossless ones must agree to 1e-5.


def write_sample_images(folder: Path) -> dict[str, Path]:
    """{file name: path}; the cases the clients must decode like the Python runtime."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    images: dict[str, Image.Image] = {}
    colour = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    alpha = np.tile(np.linspace(0, 255, 45).astype(np.uint8), (37, 1))
    alpha[:4] = 0  # fully transparent rows: the background shows
    images["alpha.png"] = Image.fromarray(np.dstack([colour, alpha]), "RGBA")
    grey = rng.integers(0, 256, (20, 40, 2), dtype=np.uint8)
    images["grey_alpha.png"] = Image.fromarray(grey, "LA")
    images["palette.png"] = Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)).quantize(16)
    yy, xx = np.mgrid[0:40, 0:64]
    gradient = np.dstack([xx * 4, yy * 6, (xx + yy) * 2]).clip(0, 255).astype(np.uint8)
    paths: dict[str, Path] = {}
    for name, image in images.items():
        params = {"transparency": 3} if name == "palette.png" else {}  # a palette entry made transparent (tRNS)
        image.save(folder / name, **params)
        paths[name] = folder / name
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display: the decoded image is 40 wide, 64 high
    paths["exif_rotated.jpg"] = folder / "exif_rotated.jpg"
    Image.fromarray(gradient).save(paths["exif_rotated.jpg"], exif=exif.tobytes(), quality=92)
    exif[0x0112] = 3  # rotate 180 degrees
    paths["exif_rotated.png"] = folder / "exif_rotated.png"
    Image.fromarray(gradient).save(paths["exif_rotated.png"], exif=exif.tobytes())
    paths["cmyk.jpg"] = folder / "cmyk.jpg"  # no colour profile: Pillow's plain CMYK -> RGB formula
    Image.fromarray(gradient).convert("CMYK").save(paths["cmyk.jpg"], quality=95)
    paths["grey16.png"] = folder / "grey16.png"  # 16-bit samples: rescaled to 8 bits with rounding
    wide = gradient[..., 0].astype(np.int32) * 257 + rng.integers(-128, 128, gradient.shape[:2])
    Image.fromarray(wide.clip(0, 65535).astype(np.uint16)).save(paths["grey16.png"])
    for source, name in ((SHARED_CIFAR_JPEG, "cifar_cat.jpg"), (SHARED_CAT_PHOTO, "photo_cat.png")):
        if source.is_file():
            paths[name] = Path(shutil.copyfile(source, folder / name))
    return paths


def write_bad_images(folder: Path) -> dict[str, Path]:
    """Files no decoder accepts: not an image at all, and a PNG cut in half."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    (folder / "not_an_image.png").write_bytes(b"this is not an image\n")
    (folder / "truncated.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return {"not_an_image.png": folder / "not_an_image.png", "truncated.png": folder / "truncated.png"}


# ---------------------------------------------------------------------------------------------------------------
# The Python reference: the rules of runtime/images.py, spelled out with Pillow, fed to plain onnxruntime.


def pillow_rgb(path: Path, background: tuple[int, int, int]) -> np.ndarray:
    """(H, W, 3) uint8 as the Python runtime decodes ``path``: EXIF-oriented, alpha composited on ``background``."""
    with Image.open(path) as opened:
        opened.load()
        image = ImageOps.exif_transpose(opened)
    if image.mode.startswith("I;16"):  # 16-bit greyscale: rescaled, 65535 -> 255, never clipped
        grey = np.rint(np.asarray(image).astype(np.float64) / 257.0).astype(np.uint8)
        return np.repeat(grey[..., np.newaxis], 3, axis=2)
    if image.mode == "La":
        image = image.convert("LA")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba)
    return np.asarray(image.convert("RGB"))


def model_contract(model_path: Path) -> dict:
    import onnx

    props = {entry.key: entry.value for entry in onnx.load(model_path, load_external_data=False).metadata_props}
    return json.loads(props[CONTRACT_KEY])


class PythonReference:
    """Probabilities from plain onnxruntime fed the Pillow-decoded pixels at their natural size (batch of 1)."""

    def __init__(self, model_path: Path) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        contract = model_contract(model_path)
        self.class_names: list[str] = contract["class_names"]
        self.background = tuple(contract.get("alpha_background", (255, 255, 255)))

    def probabilities(self, image_path: Path) -> np.ndarray:
        pixels = pillow_rgb(image_path, self.background)[np.newaxis]
        return self.session.run(["probabilities"], {"pixels": pixels})[0][0]


def check_agreement(name: str, client: dict, expected: np.ndarray, class_names: list[str]) -> float:
    """Assert one client answer agrees with the Python reference; returns max |probability difference|."""
    assert "error" not in client, client
    got = np.asarray(client["probabilities"], dtype=np.float64)
    assert got.shape == expected.shape
    assert client["label"] == class_names[int(np.argmax(expected))], (name, client["top"], expected)
    assert client["probability"] == pytest.approx(float(expected.max()), abs=1e-4)
    assert [label for label, _ in client["top"]] == [class_names[i] for i in np.argsort(-got, kind="stable")[:5]]
    difference = float(np.abs(got - expected).max())
    if not name.endswith((".jpg", ".jpeg")):  # lossless: the same pixels, so the same numbers
        assert difference <= PNG_TOLERANCE, f"{name}: max |p_js - p_python| = {difference:.2e}"
    return difference
