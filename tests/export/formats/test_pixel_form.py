"""The pixel input form (formats/pixels.py): raw uint8 pixels of any size in, probabilities and logits out, every
ONNX precision; the normalisation folded where exact; ``--input float`` keeps the float form."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_helpers import copy_run, quick_bench_config
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from typer.testing import CliRunner

from cifar_edge.export import ExportConfig, export_run
from cifar_edge.export.benchmark.measure import run_benchmark
from cifar_edge.export.cli import app
from cifar_edge.export.engines import onnx_engine, pixels_from_inputs
from cifar_edge.export.evaluate.command import EvalOptions, run_eval
from cifar_edge.export.formats.pixels import RESIZE_ATTRIBUTES, fold_normalisation, to_pixel_form
from cifar_edge.runtime.contract import Contract, unnormalized_contract
from cifar_edge.runtime.images import open_image_rgb
from cifar_edge.runtime.preprocess import normalize_batch, resize_to_contract
from cifar_edge.train.models import build_model
from cifar_edge.train.run_folder import load_run, save_model_files

pytestmark = pytest.mark.usefixtures("single_torch_thread")

runner = CliRunner()


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _prefix_ops(path: Path) -> list[str]:
    """The ops from the input to the first convolution (the pixel prefix, and what is left of the normalisation)."""
    ops = []
    for node in onnx.load(str(path)).graph.node:
        if node.op_type == "Conv" or node.op_type.startswith(("Quantize", "Dequantize")):
            break
        ops.append(node.op_type)
    return ops


def _val_pixels(labelled_data_dir: Path, contract: Contract) -> np.ndarray:
    files = sorted((labelled_data_dir / "val").rglob("*.png"))[::5]
    return np.stack([np.asarray(open_image_rgb(path, contract.alpha_background)) for path in files])


def _resized(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.stack(
        [np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)) for image in pixels]
    )


def test_default_export_takes_raw_pixels_of_any_size(exported_all) -> None:
    path = exported_all.run_dir / "model.onnx"
    session = _session(path)
    (pixels,) = session.get_inputs()
    assert (pixels.name, pixels.type, pixels.shape) == ("pixels", "tensor(uint8)", ["batch", "height", "width", 3])
    outputs = session.get_outputs()
    assert [(o.name, o.type, o.shape) for o in outputs] == [
        ("probabilities", "tensor(float)", ["batch", 3]),
        ("logits", "tensor(float)", ["batch", 3]),
    ]
    metadata = session.get_modelmeta().custom_metadata_map
    contract = Contract.from_json(metadata["cifar_edge.contract"])
    assert contract.takes_pixels and contract == load_run(exported_all.run_dir).contract.pixel_form()
    assert json.loads(metadata["cifar_edge.provenance"])["input_form"] == "pixels"
    rng = np.random.default_rng(0)
    for size in ((32, 32), (50, 70), (451, 300)):
        probabilities, logits = session.run(None, {"pixels": rng.integers(0, 256, (2, *size, 3), dtype=np.uint8)})
        assert probabilities.shape == logits.shape == (2, 3)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(probabilities, torch.softmax(torch.from_numpy(logits), 1).numpy(), atol=1e-6)
    # AirNet's whitening stem has no padding: the normalisation is folded into it, nothing but the prefix is left.
    assert _prefix_ops(path) == ["Resize", "Transpose", "Cast"]
    (resize,) = [node for node in onnx.load(str(path)).graph.node if node.op_type == "Resize"]
    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in resize.attribute}
    assert attributes["axes"] == [1, 2]
    assert {key: attributes[key] for key in RESIZE_ATTRIBUTES} == {
        key: value.encode() if isinstance(value, str) else value for key, value in RESIZE_ATTRIBUTES.items()
    }


def test_input_float_keeps_the_float_form(trained_run_dir: Path, tmp_path: Path) -> None:
    run_dir = copy_run(trained_run_dir, tmp_path / "run")
    result = runner.invoke(app, [str(run_dir), "--input", "float", "--no-verify", "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    session = _session(run_dir / "model.onnx")
    (images,) = session.get_inputs()
    assert (images.name, images.type, images.shape) == ("images", "tensor(float)", ["batch", 3, 32, 32])
    assert [output.name for output in session.get_outputs()] == ["logits"]
    metadata = session.get_modelmeta().custom_metadata_map
    assert Contract.from_json(metadata["cifar_edge.contract"]) == load_run(run_dir).contract
    assert json.loads(metadata["cifar_edge.provenance"])["input_form"] == "float"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--format", "torchscript", "--input", "pixels"], "--input pixels applies to ONNX/Triton repository only"),
        (["--opset", "17"], "use --opset 18 or newer, or --input float"),
    ],
    ids=["torchscript-pixels", "opset-17"],
)
def test_pixel_form_usage_errors(trained_run_dir: Path, tmp_path: Path, arguments: list[str], message: str) -> None:
    run_dir = copy_run(trained_run_dir, tmp_path / "run")
    result = runner.invoke(app, [str(run_dir), *arguments, "--no-verify", "-q"], catch_exceptions=False)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert not (run_dir / "model.onnx").exists() and not (run_dir / "model.torchscript.pt").exists()


def test_a_resize_the_graph_cannot_match_needs_input_float(trained_run_dir: Path, tmp_path: Path) -> None:
    run_dir = copy_run(trained_run_dir, tmp_path / "run")
    record = json.loads((run_dir / "run.json").read_text())
    record["contract"]["resize_method"] = "bicubic"
    (run_dir / "run.json").write_text(json.dumps(record))
    result = runner.invoke(app, [str(run_dir), "--no-verify", "-q"], catch_exceptions=False)
    assert result.exit_code == 2 and "'bicubic'" in result.stderr and "pass --input float" in result.stderr
    assert runner.invoke(app, [str(run_dir), "--no-verify", "-q", "--input", "float"]).exit_code == 0
    assert runner.invoke(app, [str(run_dir), "--no-verify", "-q", "--format", "torchscript"]).exit_code == 0


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_fp16_and_int8_pixel_forms_agree_with_their_float_forms(
    precision: str, trained_run_dir: Path, labelled_data_dir: Path, tmp_path: Path
) -> None:
    run_dir = copy_run(trained_run_dir, tmp_path / "run")
    selected = {"dtype": "fp16"} if precision == "fp16" else {"quantize": "int8", "calibration_images": 30}
    config = ExportConfig(data=labelled_data_dir, verify=False, **selected)
    (pixel_file,) = [artifact.path for artifact in export_run(run_dir, config).artifacts]
    float_config = ExportConfig(data=labelled_data_dir, verify=False, input_form="float", output=tmp_path, **selected)
    (float_file,) = [artifact.path for artifact in export_run(run_dir, float_config).artifacts]
    pixel_session, float_session = _session(pixel_file), _session(float_file)
    assert pixel_session.get_inputs()[0].type == "tensor(uint8)"
    assert [output.type for output in pixel_session.get_outputs()] == ["tensor(float)"] * 2  # float32 out
    # The prefix is standard ONNX (onnxruntime-web runs it), whatever the precision behind it.
    prefix = onnx.load(str(pixel_file)).graph.node[: len(_prefix_ops(pixel_file))]
    assert all(node.domain in ("", "ai.onnx") for node in prefix)
    contract = load_run(run_dir).contract
    images = _val_pixels(labelled_data_dir, contract)
    for raw in (images, _resized(images, 50, 70)):
        training_time = np.stack([resize_to_contract(Image.fromarray(image), contract) for image in raw])
        expected = float_session.run(["logits"], {"images": normalize_batch(training_time, contract)})[0]
        logits = pixel_session.run(["logits"], {"pixels": raw})[0]
        assert (logits.argmax(axis=1) == expected.argmax(axis=1)).all()
        exact = precision == "int8" and raw.shape[1:3] == (32, 32)  # same quantized graph, same normalisation ops
        np.testing.assert_allclose(logits, expected, atol=1e-6 if exact else 0.05, rtol=0)


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of the tutorial net (its first convolution pads, so the normalisation cannot fold)."""
    torch.manual_seed(0)
    run_dir = tmp_path_factory.mktemp("seed_run")
    contract = Contract(class_names=("red", "green", "blue"))
    record = {"architecture": {"name": "seed", "kwargs": {"num_classes": 3}}, "contract": contract.to_dict()}
    save_model_files(run_dir, build_model("seed", num_classes=3), {**record, "metrics": {}})
    return run_dir


@pytest.mark.parametrize(("model", "tta", "folded"), [("seed", "none", False), ("airnet", "flip_shift", True)])
def test_normalisation_is_folded_only_where_exact(
    model: str, tta: str, folded: bool, seed_run: Path, trained_run_dir: Path, labelled_data_dir: Path, tmp_path: Path
) -> None:
    """The tutorial net's padded convolution keeps explicit ops; AirNet's flip-and-shift views reach its stem through
    flips, slices and reflect pads, which commute with the per-channel normalisation, so it folds. Both pass the
    fp32 gate (1e-4 on the logits)."""
    run_dir = copy_run(seed_run if model == "seed" else trained_run_dir, tmp_path / "run")
    result = export_run(run_dir, ExportConfig(data=labelled_data_dir, verify_images=30, tta=tta))
    assert result.ok, result.artifacts[0].report.failures()
    ops = _prefix_ops(run_dir / "model.onnx")
    assert ops[:3] == ["Resize", "Transpose", "Cast"]
    assert ("Div" in ops or "Sub" in ops) is not folded, ops


def _one_conv_graph(pad_mode: str | None, conv_pads: int) -> onnx.ModelProto:
    """images (float NCHW) -> [Pad] -> Conv(3 -> 4, 2x2) -> ReduceMean -> logits (float form, 4 "classes")."""
    rng = np.random.default_rng(0)
    nodes, initializers, source = [], [], "images"
    if pad_mode is not None:
        initializers.append(numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"))
        nodes.append(helper.make_node("Pad", ["images", "pads"], ["padded"], mode=pad_mode))
        source = "padded"
    initializers += [
        numpy_helper.from_array(rng.normal(size=(4, 3, 2, 2)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "b"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
    ]
    nodes += [
        helper.make_node("Conv", [source, "w", "b"], ["conv"], pads=[conv_pads] * 4),
        helper.make_node("ReduceMean", ["conv", "axes"], ["logits"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


@pytest.mark.parametrize(
    ("pad_mode", "conv_pads", "folds"),
    [(None, 0, True), ("reflect", 0, True), ("edge", 0, True), ("constant", 0, False), (None, 1, False)],
)
def test_fold_rule_on_small_graphs(pad_mode: str | None, conv_pads: int, folds: bool) -> None:
    contract = Contract(class_names=("a", "b", "c", "d"))
    model = _one_conv_graph(pad_mode, conv_pads)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    assert fold_normalisation(probe.graph, contract) is folds
    pixels = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    expected = _session_of(model).run(None, {"images": normalize_batch(pixels, contract)})[0]
    _, logits = _session_of(to_pixel_form(model, contract)).run(None, {"pixels": pixels})
    np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=0)  # exact either way (fold or explicit ops)


def _session_of(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("contract", [Contract(), unnormalized_contract()], ids=["cifar10", "unnormalised"])
def test_float_batches_turn_back_into_their_exact_pixels(contract: Contract) -> None:
    values = np.arange(256, dtype=np.uint8)
    pixels = np.stack([values, values[::-1], np.roll(values, 97)], axis=-1).reshape(4, 8, 8, 3)
    assert np.array_equal(pixels_from_inputs(normalize_batch(pixels, contract), contract), pixels)


def test_a_pixel_form_engine_takes_pixels_and_float_batches(exported_all) -> None:
    engine = onnx_engine(exported_all.run_dir / "model.onnx")
    try:
        contract = engine.classifier.contract
        pixels = np.random.default_rng(2).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
        assert engine.takes_pixels
        np.testing.assert_array_equal(engine.forward(pixels), engine.forward(normalize_batch(pixels, contract)))
        assert engine.forward(_resized(pixels, 50, 70)).shape == (5, 3)  # raw pixels of another size
    finally:
        engine.close()


def test_eval_and_bench_give_the_same_accuracy_on_both_forms(
    trained_run_dir: Path, labelled_data_dir: Path, tmp_path: Path
) -> None:
    """cifar-eval hands a pixel-form file the pixels, cifar-bench float batches it turns back into them: both score
    the pixel-form file exactly as the float-form file of the same run."""
    results = {}
    for form in ("pixels", "float"):
        run_dir = copy_run(trained_run_dir, tmp_path / form)
        assert export_run(run_dir, ExportConfig(data=labelled_data_dir, input_form=form, verify_images=30)).ok
        options = EvalOptions(
            str(run_dir / "model.onnx"), str(labelled_data_dir), provider="cpu", output_dir=str(tmp_path), plots=False
        )
        assert run_eval(options, stdout=io.StringIO(), stderr=io.StringIO()) == 0
        report = json.loads((tmp_path / "eval.json").read_text())
        assert report["input_form"] == form
        (row,) = run_benchmark(quick_bench_config(run_dir, labelled_data_dir, "onnx-fp32")).rows
        assert row.status == "ok" and row.notes == [], row  # the file exported above, not a new one
        results[form] = (report["top1_accuracy"], row.accuracy, row.agreement)
    assert results["pixels"] == results["float"]
