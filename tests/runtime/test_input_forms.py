"""The two input forms: a float-form file (the runtime normalises, float32 NCHW in) and a pixel-form file (uint8 NHWC
in; resize, normalisation and softmax in the graph) of the same weights give the same answers through every entry
point, and the runtime never normalises for the pixel form."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image, ImageOps
from runtime_helpers import TINY_CLASSES, build_form_model, save_model, write_mode_images
from typer.testing import CliRunner

import cifar_edge.runtime.preprocess as preprocess_module
from cifar_edge.runtime import Classifier, ModelError, Prediction
from cifar_edge.runtime.contract import CONTRACT_METADATA_KEY, Contract
from cifar_edge.runtime.evaluation import evaluate
from cifar_edge.runtime.infer.cli import app
from cifar_edge.runtime.labelled import load_labelled_folder
from cifar_edge.runtime.model_file import ModelIO, check_graph_matches_contract

runner = CliRunner()
TOLERANCE = 1e-6  # probabilities of the two forms: the same weights, normalised in numpy or in the graph
SMALL = {"batch_size": 4, "streams": 2, "intra_op_threads": 1, "decode_workers": 2}
PIXEL_NOTE = "input: uint8 pixels NHWC, any size (resize to 32x32, normalisation and softmax in the model)"
FLOAT_NOTE = "input: float32 NCHW 32x32, normalised by the runtime"


@pytest.fixture(scope="module")
def mode_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_mode_images(tmp_path_factory.mktemp("mode_images"))


class FeedRecorder:
    """The real session, noting the dtype and shape of every batch fed to it."""

    def __init__(self, session: Any) -> None:
        self.session, self.feeds, self.lock = session, [], threading.Lock()

    def run(self, outputs: Any, feeds: dict[str, np.ndarray]) -> Any:
        with self.lock:
            self.feeds += [(name, value.dtype.name, value.shape) for name, value in feeds.items()]
        return self.session.run(outputs, feeds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def by_class(prediction: Prediction) -> np.ndarray:
    """Every class's probability, by class index (the prediction must list all classes)."""
    chances = np.full(len(prediction.top_k), np.nan)
    for score in prediction.top_k:
        chances[score.index] = score.probability
    assert not np.isnan(chances).any()
    return chances


def assert_same_answers(floats: list[Any], pixels: list[Any]) -> None:
    assert len(floats) == len(pixels) > 0
    for from_float, from_pixels in zip(floats, pixels, strict=True):
        assert isinstance(from_float, Prediction) and isinstance(from_pixels, Prediction), (from_float, from_pixels)
        assert from_float.source == from_pixels.source
        assert from_float.label == from_pixels.label, from_float.source
        np.testing.assert_allclose(by_class(from_pixels), by_class(from_float), rtol=0, atol=TOLERANCE)


def test_the_two_forms_of_one_network_give_the_same_answers_on_real_files(
    form_models: dict[str, Path], mode_images: dict[str, Path]
) -> None:
    """RGBA, palette with transparency, greyscale (8 and 16 bit, with alpha), CMYK and EXIF-rotated JPEGs, sizes from
    20x40 to 150x97 and one already 32x32: decoded alike, resized by Pillow, then each form's own input."""
    files = sorted(mode_images.values())
    with Classifier(form_models["float"], "cpu", **SMALL) as floats, Classifier(form_models["pixels"], **SMALL) as px:
        assert (floats.contract.input_form, px.contract.input_form) == ("float", "pixels")
        from_float = list(floats.predict_iter(files, top_k=10))
        from_pixels = list(px.predict_iter(files, top_k=10))
        assert_same_answers(from_float, from_pixels)
        assert len({p.label for p in from_float}) > 1  # the network tells these images apart
        # Decoded inputs: PIL images (EXIF applied as for files) and arrays of their natural sizes.
        opened = [Image.open(path) for path in files]
        arrays = [np.asarray(ImageOps.exif_transpose(image).convert("RGB")) for image in opened[:4]]
        assert_same_answers(floats.classify_batch(opened, top_k=10), px.classify_batch(opened, top_k=10))
        assert_same_answers(floats.predict(arrays, top_k=10), px.predict(arrays, top_k=10))
        assert [p.label for p in px.classify_batch(opened)] == [p.label for p in from_pixels]


def test_the_pixel_form_feeds_uint8_nhwc_and_never_normalises(
    form_models: dict[str, Path], mode_images: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = sorted(mode_images.values())
    with Classifier(form_models["float"], "cpu", streams=1) as floats:
        expected = list(floats.predict_iter(files, top_k=10))
        recorder = FeedRecorder(floats.session)
        floats.session = recorder
        floats.logits(np.stack([floats.prepare(path) for path in files]))
        assert recorder.feeds == [("images", "float32", (len(files), 3, 32, 32))]

    def refuse(*_args: Any) -> None:
        raise AssertionError("normalize_batch ran for a pixel-form model")

    monkeypatch.setattr(preprocess_module, "normalize_batch", refuse)
    with Classifier(form_models["pixels"], "cpu", streams=2, batch_size=4) as px:
        assert px.model_input.describe() == PIXEL_NOTE.removeprefix("input: ")
        prepared = px.prepare(files[0])
        assert prepared.dtype == np.uint8 and prepared.shape == (32, 32, 3)
        recorder = FeedRecorder(px.session)
        px.session = recorder
        got = list(px.predict_iter(files, top_k=10))
        assert {(name, dtype) for name, dtype, _ in recorder.feeds} == {("pixels", "uint8")}
        assert all(shape[1:] == (32, 32, 3) for _, _, shape in recorder.feeds)
        assert sum(shape[0] for _, _, shape in recorder.feeds) == len(files)
        pixels = np.stack([px.prepare(path) for path in files])
        logits = px.logits(pixels)
        np.testing.assert_array_equal(px.forward(pixels), logits)
        with pytest.raises(ValueError, match=r"takes uint8 \(N, H, W, 3\) pixels, got float32"):
            px.forward(pixels.astype(np.float32))
    assert_same_answers(expected, got)
    # The runtime reads the graph's logits output (softmax in float64 itself), as plain onnxruntime gives it.
    plain = ort.InferenceSession(str(form_models["pixels"]), providers=["CPUExecutionProvider"])
    probabilities, plain_logits = plain.run(["probabilities", "logits"], {"pixels": pixels})
    np.testing.assert_allclose(logits, plain_logits, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.stack([by_class(p) for p in got]), probabilities, rtol=0, atol=1e-6)


def test_a_fixed_batch_pixel_model_runs_whole_padded_batches_on_streams(
    tmp_path: Path, form_models: dict[str, Path], mode_images: dict[str, Path]
) -> None:
    path = save_model(build_form_model(Contract().pixel_form(), batch_dim=4), tmp_path / "fixed4_pixels.onnx")
    files = sorted(mode_images.values())
    with Classifier(form_models["pixels"], "cpu", streams=1) as dynamic, Classifier(path, "cpu", streams=2) as fixed:
        assert fixed.io.fixed_batch_size == 4
        pixels = np.stack([dynamic.prepare(f) for f in files])  # 9 images: 4 + 4 + 1 padded to 4
        recorder = FeedRecorder(fixed.session)
        fixed.session = recorder
        np.testing.assert_allclose(fixed.logits(pixels), dynamic.logits(pixels), rtol=0, atol=1e-6)
        assert sorted(recorder.feeds) == [("pixels", "uint8", (4, 32, 32, 3))] * 3
        assert_same_answers(list(dynamic.predict_iter(files, top_k=10)), list(fixed.predict_iter(files, top_k=10)))


def test_evaluation_scores_both_forms_alike_and_records_the_form(
    colour_model: Path, pixel_colour_model: Path, colour_images: Path, colour_contract: Contract
) -> None:
    reports = {}
    for form, path in (("float", colour_model), ("pixels", pixel_colour_model)):
        with Classifier(path, "cpu", **SMALL) as classifier:
            data = load_labelled_folder(colour_images, classifier.contract)
            reports[form] = evaluate(classifier, data, classifier.contract, batch_size=5)
        assert reports[form]["input_form"] == form
        assert reports[form]["top1_accuracy"] == 1.0
    # A predict function of the pixel form is handed the uint8 NHWC pixels, as the Classifier feeds its session.
    session = ort.InferenceSession(str(pixel_colour_model), providers=["CPUExecutionProvider"])
    seen: list[np.dtype] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.dtype)
        return session.run(["logits"], {"pixels": batch})[0]

    pixel_contract = colour_contract.pixel_form()
    from_function = evaluate(predict, load_labelled_folder(colour_images, pixel_contract), pixel_contract)
    assert set(seen) == {np.dtype(np.uint8)}
    for key in ("input_form", "top1_accuracy", "confusion_matrix", "per_class"):
        assert from_function[key] == reports["pixels"][key]
    assert reports["float"]["confusion_matrix"] == reports["pixels"]["confusion_matrix"]


def test_cifar_infer_reports_the_input_form_and_gives_the_same_json(
    form_models: dict[str, Path], mode_images: dict[str, Path]
) -> None:
    files = [str(path) for path in sorted(mode_images.values())]
    records = {}
    for form, note in (("float", FLOAT_NOTE), ("pixels", PIXEL_NOTE)):
        result = runner.invoke(app, [*files, "--json", "--top-k", "10", "--model", str(form_models[form])])
        assert result.exit_code == 0, result.output
        assert note in result.stderr.splitlines()
        records[form] = [json.loads(line) for line in result.stdout.splitlines()]
        table = runner.invoke(app, [files[0], "--model", str(form_models[form])])
        assert table.exit_code == 0 and note in table.stderr
    assert len(records["pixels"]) == len(files)
    for from_float, from_pixels in zip(records["float"], records["pixels"], strict=True):
        assert (from_float["path"], from_float["label"]) == (from_pixels["path"], from_pixels["label"])
        for a, b in zip(from_float["top_k"], from_pixels["top_k"], strict=True):
            assert a["probability"] == pytest.approx(b["probability"], abs=TOLERANCE)


@pytest.mark.parametrize("form", ["float", "pixels"])
def test_doctor_reports_the_input_form(form_models: dict[str, Path], form: str) -> None:
    note = {"float": FLOAT_NOTE, "pixels": PIXEL_NOTE}[form].removeprefix("input: ")
    result = runner.invoke(app, ["--doctor", "--model", str(form_models[form]), "--provider", "cpu"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("input form ")]
    assert len(rows) == 1 and rows[0].endswith(f" {form}: {note}"), rows
    report = json.loads(runner.invoke(app, ["--doctor", "--json", "--model", str(form_models[form])]).stdout)
    assert report["model"]["input_form"] == form and report["model"]["input_description"] == note
    assert report["model"]["input"].startswith("pixels [?, ?, ?, 3] tensor(uint8)" if form == "pixels" else "images")


def test_a_float_file_from_an_earlier_release_keeps_working(form_models: dict[str, Path], tmp_path: Path) -> None:
    """Schema 1, no input_form field: read as the float form, with the same answers as today's float file."""
    earlier = {key: value for key, value in Contract().to_dict().items() if key != "input_form"}
    assert earlier["schema_version"] == 1
    model = build_form_model(Contract(), metadata={CONTRACT_METADATA_KEY: json.dumps(earlier)})
    path = save_model(model, tmp_path / "schema1.onnx")
    pixels = np.random.default_rng(3).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    with Classifier(path, "cpu") as old, Classifier(form_models["float"], "cpu") as new:
        assert old.contract.input_form == "float" and not old.contract.takes_pixels
        np.testing.assert_array_equal(old.logits(pixels), new.logits(pixels))


@pytest.mark.parametrize(
    ("shape", "problem"),
    [
        ((None, 64, 64, 3), "graph input axis 1 is 64, contract expects 32 (NHWC)"),
        ((None, None, None, 4), "graph input axis 3 is 4, contract expects 3 (NHWC)"),
        ((None, None, 3), "graph input has rank 3, expected 4 (NHWC)"),
        ((None, 3, 32, 32), "graph input axis 3 is 32, contract expects 3 (NHWC)"),
    ],
)
def test_a_pixel_graph_must_take_nhwc_rgb_at_any_or_the_contract_size(shape: tuple, problem: str) -> None:
    contract = Contract(class_names=TINY_CLASSES).pixel_form()
    io = ModelIO("pixels", shape, "tensor(uint8)", "logits", (None, 3), ("probabilities", "logits"))
    with pytest.raises(ModelError, match=r"^m\.onnx: model and contract disagree: .*" + re.escape(problem)):
        check_graph_matches_contract(io, contract, "m.onnx")
    check_graph_matches_contract(
        ModelIO("pixels", (8, 32, 32, 3), "tensor(uint8)", "logits", (8, 3)), contract, "fixed.onnx"
    )
