"""cifar-serve against clients no one here wrote (Triton's ``tritonclient.http``) and its image endpoint: every
answer equals what the runtime's Classifier (the one cifar-infer runs) gives on the same pixels and files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from cli_helpers import cli_argv
from PIL import Image
from serve_helpers import Server

from cifar_edge.runtime.classifier import Classifier
from cifar_edge.runtime.predictions import softmax

pytestmark = pytest.mark.timeout(120)


def _pixels(seed: int, count: int, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *size, 3), dtype=np.uint8)


def _client(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.address, connection_timeout=10, network_timeout=30)


def test_health_metadata_and_config_through_tritonclient(pixel_server: Server) -> None:
    client = _client(pixel_server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("conv_pixels")
    assert not client.is_model_ready("no_such_model")
    metadata = client.get_model_metadata("conv_pixels")
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "pixels", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}]
    assert [output["name"] for output in metadata["outputs"]] == ["probabilities", "logits"]
    config = client.get_model_config("conv_pixels")
    assert config["backend"] == "onnxruntime" and config["max_batch_size"] == 64
    assert config["input"][0]["data_type"] == "TYPE_UINT8" and config["input"][0]["dims"] == [-1, -1, 3]
    assert config["output"][0]["data_type"] == "TYPE_FP32" and config["output"][0]["dims"] == [10]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 5000
    assert "classification" in client.get_server_metadata()["extensions"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("size", [(32, 32), (45, 20)], ids=["contract-size", "other-size"])
def test_infer_equals_the_classifier(
    pixel_server: Server, form_models: dict[str, Path], binary: bool, size: tuple[int, int]
) -> None:
    images = _pixels(3, 5, size)
    tensor = triton.InferInput("pixels", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images, binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("probabilities", "logits")]
    result = _client(pixel_server).infer("conv_pixels", [tensor], outputs=outputs)
    with Classifier(form_models["pixels"], "cpu") as classifier:
        expected = classifier.forward(images)
    np.testing.assert_allclose(result.as_numpy("logits"), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.as_numpy("probabilities"), softmax(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_classification_extension(pixel_server: Server, form_models: dict[str, Path], binary: bool) -> None:
    images = _pixels(4, 6)
    tensor = triton.InferInput("pixels", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images, binary_data=binary)
    output = triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=3)
    result = _client(pixel_server).infer("conv_pixels", [tensor], outputs=[output])
    strings = result.as_numpy("probabilities")
    assert strings.shape == (6, 3)
    with Classifier(form_models["pixels"], "cpu") as classifier:
        predictions = classifier.classify_batch(images, top_k=3)
    for row, prediction in zip(strings, predictions, strict=True):
        fields = [(item.decode() if isinstance(item, bytes) else item).split(":") for item in row]
        assert [(int(index), label) for _score, index, label in fields] == [
            (score.index, score.label) for score in prediction.top_k
        ]
        assert [float(score) for score, _index, _label in fields] == pytest.approx(
            [score.probability for score in prediction.top_k], abs=2e-6
        )


def test_float_form_model_takes_normalised_tensors(float_server: Server, form_models: dict[str, Path]) -> None:
    client = _client(float_server)
    metadata = client.get_model_metadata("cifar")
    assert metadata["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
    assert [output["name"] for output in metadata["outputs"]] == ["logits"]
    with Classifier(form_models["float"], "cpu") as classifier:
        inputs = classifier.model_input.from_pixels(_pixels(5, 4))
        expected = classifier.forward(inputs)
    for binary in (True, False):
        tensor = triton.InferInput("images", list(inputs.shape), "FP32")
        tensor.set_data_from_numpy(inputs, binary_data=binary)
        result = client.infer("cifar", [tensor])
        np.testing.assert_allclose(result.as_numpy("logits"), expected, rtol=1e-5, atol=1e-5)


def test_classify_answers_the_cifar_infer_record(
    pixel_server: Server, form_models: dict[str, Path], tmp_path: Path
) -> None:
    files = []
    for number, colour in enumerate([(220, 20, 20), (20, 200, 30), (30, 40, 230)]):
        path = tmp_path / f"img{number}.png"
        Image.new("RGB", (37, 29), colour).save(path)
        files.append(path)
    infer = subprocess.run(
        cli_argv("cifar-infer", [*files, "--model", form_models["pixels"], "--json", "--provider", "cpu", "-q"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert infer.returncode == 0, infer.stderr
    expected = [json.loads(line) for line in infer.stdout.splitlines()]
    url = pixel_server.url + "/v2/models/conv_pixels/classify"
    raw = httpx.post(url, params={"name": str(files[0])}, content=files[0].read_bytes(), timeout=30)
    assert raw.status_code == 200 and raw.json() == expected[0]
    form = [("file", (str(path), path.read_bytes(), "image/png")) for path in files]
    answer = httpx.post(url, files=form, timeout=30)
    assert answer.status_code == 200 and answer.json() == expected
    mixed = httpx.post(url, files=[form[0], ("file", ("notes.txt", b"not an image", "text/plain"))], timeout=30)
    assert mixed.status_code == 200
    assert mixed.json()[1] == {"path": "notes.txt", "error": "not an image (unrecognised or unsupported format)"}


def test_page_and_metrics(pixel_server: Server) -> None:
    page = httpx.get(pixel_server.url + "/", timeout=10)
    assert page.status_code == 200 and '"conv_pixels"' in page.text and "<script>" in page.text
    metrics = httpx.get(pixel_server.url + "/metrics", timeout=10).text
    for name in ("cifar_serve_requests_total", "cifar_serve_queue_seconds", "cifar_serve_compute_seconds"):
        assert name in metrics
    for name in ("cifar_serve_batch_size_bucket", "cifar_serve_in_flight", "cifar_serve_queued"):
        assert name in metrics
    assert "GET / 200" in pixel_server.stderr()  # --log-level debug: one line per request
