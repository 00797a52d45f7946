"""The Python API: Classifier over paths, PIL images and arrays; batching; probabilities against a hand computation."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runtime_helpers import TINY_CLASSES, build_colour_model, save_model

from cifar_edge.runtime import Classifier, ClassScore, Failure, ImageDecodeError, Prediction
from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.predictions import softmax


def colour_files(colour_images: Path) -> list[Path]:
    return sorted(colour_images.rglob("*.png"))


def expected_probabilities(pixels: np.ndarray, contract: Contract) -> np.ndarray:
    """What the colour model must output for uint8 (N, H, W, 3) pixels, computed by hand in float64."""
    scaled = (pixels.astype(np.float64) / 255.0 - np.array(contract.mean)) / np.array(contract.std)
    pooled = scaled.mean(axis=(1, 2))
    weights = np.zeros((3, contract.num_classes))
    for index in range(contract.num_classes):
        weights[index % 3, index] = 10.0
    logits = pooled @ weights + np.linspace(0.0, 0.01, contract.num_classes)
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def classifier(colour_model: Path) -> Iterator[Classifier]:
    with Classifier(colour_model, provider="cpu") as opened:
        yield opened


def test_classifies_every_colour_image_correctly_with_exact_probabilities(
    classifier: Classifier, colour_images: Path
) -> None:
    files = colour_files(colour_images)
    predictions = classifier.predict(files)
    assert [p.label for p in predictions] == [f.parent.name for f in files]
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    expected = expected_probabilities(pixels, classifier.contract)
    got = np.array([[next(s.probability for s in p.top_k if s.index == i) for i in range(3)] for p in predictions])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_paths_pil_images_and_arrays_agree(classifier: Classifier, colour_images: Path) -> None:
    files = colour_files(colour_images)
    pil_images = [Image.open(f) for f in files]
    arrays = [np.asarray(image.convert("RGB")) for image in pil_images]
    by_path = classifier.predict(files)
    by_pil = classifier.predict(pil_images)
    by_array = classifier.predict(arrays)
    by_stack = classifier.predict(np.stack(arrays))
    by_bytes = classifier.predict([f.read_bytes() for f in files])
    for results in (by_pil, by_array, by_stack, by_bytes):
        assert [p.label for p in results] == [p.label for p in by_path]
        np.testing.assert_allclose([p.probability for p in results], [p.probability for p in by_path], atol=1e-6)
    assert by_pil[0].source == str(files[0])  # a PIL image from a file keeps its filename
    assert by_array[1].source == "<array 1>"
    assert by_bytes[2].source == "<bytes 2>"
    with pytest.raises(ImageDecodeError, match=r"<bytes 0>: not an image"):
        classifier.predict([b"GIF89a but not really"])
    single = classifier.predict(arrays[0])
    assert isinstance(single, Prediction) and single.label == by_path[0].label


def test_batching_gives_the_same_results_as_one_by_one(classifier: Classifier, colour_images: Path) -> None:
    files = colour_files(colour_images)
    one_by_one = [classifier.predict(f) for f in files]
    for batch_size in (1, 5, 64):
        batched = list(classifier.predict_iter(files, batch_size=batch_size))
        assert [p.label for p in batched] == [p.label for p in one_by_one]
        np.testing.assert_allclose(
            [[s.probability for s in p.top_k] for p in batched],
            [[s.probability for s in p.top_k] for p in one_by_one],
            atol=1e-6,
        )


def test_failures_keep_their_place_and_the_rest_is_classified(
    classifier: Classifier, colour_images: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    files = colour_files(colour_images)
    items = [files[0], broken, files[5], tmp_path / "absent.jpg", files[9]]
    results = list(classifier.predict_iter(items, batch_size=2))
    assert [type(r).__name__ for r in results] == ["Prediction", "Failure", "Prediction", "Failure", "Prediction"]
    assert results[1].source == str(broken) and results[3].reason == "file not found"
    assert [r.label for r in results if isinstance(r, Prediction)] == [
        f.parent.name for f in (files[0], files[5], files[9])
    ]
    with pytest.raises(ImageDecodeError, match=r"broken\.png"):
        classifier.predict(items)


def test_any_size_is_resized_with_the_contract_filter(classifier: Classifier) -> None:
    rng = np.random.default_rng(3)
    big = rng.integers(0, 256, (300, 451, 3), dtype=np.uint8)
    resized = np.asarray(Image.fromarray(big).resize((32, 32), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(classifier.prepare(big), resized)
    prediction = classifier.predict(big)
    np.testing.assert_allclose(
        prediction.probability, expected_probabilities(resized[None], classifier.contract).max(), atol=1e-5
    )


def test_array_inputs_are_checked(classifier: Classifier) -> None:
    grey = np.full((32, 32), 200, dtype=np.uint8)
    assert classifier.predict(grey).probability > 0  # greyscale (H, W) is accepted
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., 1] = 255
    rgba[..., 3] = 255
    assert classifier.predict(rgba).label == "green"
    (failure,) = classifier.predict_iter([np.zeros((32, 32, 3), dtype=np.float32)])
    assert isinstance(failure, Failure) and "uint8" in failure.reason and failure.source == "<array 0>"
    with pytest.raises(TypeError, match="cannot classify a int"):
        classifier.predict([42])


def test_prediction_type_and_json_record(classifier: Classifier, colour_images: Path) -> None:
    prediction = classifier.predict(colour_files(colour_images)[0], top_k=2)
    assert dataclasses.is_dataclass(prediction)
    with pytest.raises(dataclasses.FrozenInstanceError):
        prediction.label = "cat"  # type: ignore[misc]
    assert len(prediction.top_k) == 2 and isinstance(prediction.top_k[0], ClassScore)
    assert prediction.top_k[0].label == prediction.label
    record = prediction.to_dict()
    assert set(record) == {"path", "label", "index", "probability", "top_k"}
    assert set(record["top_k"][0]) == {"label", "probability"}
    assert len(classifier.predict(colour_files(colour_images)[0], top_k=99).top_k) == 3  # capped at #classes


def test_contract_and_provenance_are_read_from_the_model(classifier: Classifier) -> None:
    assert classifier.contract.class_names == TINY_CLASSES
    assert classifier.contract.alpha_background == (0, 0, 0)
    assert classifier.provenance is not None and classifier.provenance["precision"] == "fp32"
    assert len(classifier.sha256) == 64


def test_normalisation_follows_the_contract(tmp_path: Path) -> None:
    contract = Contract(class_names=TINY_CLASSES, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    path = save_model(build_colour_model(contract), tmp_path / "normalised.onnx")
    pixels = np.random.default_rng(5).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    with Classifier(path) as normalised:
        got = [[s.probability for s in sorted(p.top_k, key=lambda s: s.index)] for p in normalised.predict(pixels)]
    np.testing.assert_allclose(got, expected_probabilities(pixels, contract), atol=1e-5)


def test_fixed_batch_and_float16_models(tmp_path: Path, colour_contract: Contract, colour_images: Path) -> None:
    from onnx import TensorProto

    files = colour_files(colour_images)
    with Classifier(save_model(build_colour_model(colour_contract), tmp_path / "dynamic.onnx")) as dynamic:
        reference = [p.probability for p in dynamic.predict(files)]
    fixed_path = save_model(build_colour_model(colour_contract, batch_dim=4), tmp_path / "fixed4.onnx")
    with Classifier(fixed_path, batch_size=5) as fixed:  # 12 files in runs of 4, the last one padded
        np.testing.assert_allclose([p.probability for p in fixed.predict(files)], reference, atol=1e-6)
    half_path = save_model(
        build_colour_model(colour_contract, input_type=TensorProto.FLOAT16), tmp_path / "half_input.onnx"
    )
    with Classifier(half_path) as half:
        np.testing.assert_allclose([p.probability for p in half.predict(files)], reference, atol=2e-3)


def test_softmax_is_numerically_stable() -> None:
    probabilities = softmax(np.array([[1000.0, 0.0, -1000.0], [1e-3, 1e-3, 1e-3]], dtype=np.float32))
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    np.testing.assert_allclose(probabilities[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(probabilities[1], [1 / 3] * 3)
