"""``Classifier.classify_batch``: decoded images in, Predictions out, and one Classifier shared by many threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from runtime_helpers import TINY_CLASSES

import cifar_edge.runtime.classifier as classifier_module
from cifar_edge.runtime import Classifier, ImageDecodeError, Prediction

THREADS = 8
ROUNDS = 20
# Small batches and two streams: each call runs several batches, and each batch is split over the shared pool.
SHARED = {"batch_size": 4, "streams": 2, "intra_op_threads": 1, "decode_workers": 2}
# The colour model in both input forms: float32 NCHW normalised by the runtime, and uint8 NHWC pixels.
FORMS = ["colour_model", "pixel_colour_model"]


def made_images(seed: int, count: int = 7) -> list[Image.Image | np.ndarray]:
    """Real images made with Pillow, of mixed sizes and kinds (RGB, RGBA, arrays), each dominated by one colour."""
    rng = np.random.default_rng(seed)
    images: list[Image.Image | np.ndarray] = []
    for n in range(count):
        width, height = (int(side) for side in rng.integers(12, 70, size=2))
        pixels = rng.integers(0, 90, size=(height, width, 3), dtype=np.uint8)
        pixels[..., (seed + n) % 3] = rng.integers(150, 256, size=(height, width), dtype=np.uint8)
        image = Image.fromarray(pixels, "RGB")
        if n % 3 == 1:
            image = image.convert("RGBA")
        images.append(np.asarray(image) if n % 3 == 2 else image)
    return images


def dominant_labels(seed: int, count: int = 7) -> list[str]:
    return [TINY_CLASSES[(seed + n) % 3] for n in range(count)]


@pytest.mark.parametrize("model", FORMS)
def test_classify_batch_agrees_with_predict(model: str, request: pytest.FixtureRequest) -> None:
    images = made_images(seed=1)
    with Classifier(request.getfixturevalue(model), "cpu", **SHARED) as classifier:
        predictions = classifier.classify_batch(images, top_k=2)
        assert predictions == classifier.predict(images, top_k=2)
        assert [p.label for p in predictions] == dominant_labels(seed=1)
        assert all(isinstance(p, Prediction) and len(p.top_k) == 2 for p in predictions)
        assert [p.source for p in predictions[:3]] == ["<PIL image 0>", "<PIL image 1>", "<array 2>"]
        pixels = np.stack([classifier.prepare(image) for image in images])
        assert classifier.classify_batch(pixels) == classifier.classify_batch(list(pixels))
        assert classifier.classify_batch([]) == []


def test_classify_batch_refuses_what_is_not_a_batch_of_decoded_images(colour_model: Path, red_png: Path) -> None:
    with Classifier(colour_model, "cpu") as classifier:
        with pytest.raises(TypeError, match="pass paths and bytes to predict"):
            classifier.classify_batch([str(red_png)])
        with pytest.raises(TypeError, match="a list of decoded images"):
            classifier.classify_batch(Image.open(red_png))
        with pytest.raises(ValueError, match=r"uint8 \(N, H, W, 3\) array"):
            classifier.classify_batch(np.zeros((32, 32, 3), dtype=np.uint8))
        with pytest.raises(ImageDecodeError, match="expected a uint8 array"):
            classifier.classify_batch([np.zeros((32, 32, 3), dtype=np.float32)])


@pytest.mark.parametrize("model", FORMS)
def test_one_classifier_shared_by_eight_threads_gives_each_what_it_gets_alone(
    model: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight threads, each with its own images, classify through one fresh Classifier at the same moment, over and
    over: every result equals that thread's single-threaded result, and only one decode pool is ever made (for a
    float-form and a pixel-form model alike)."""
    colour_model: Path = request.getfixturevalue(model)
    inputs = {thread: made_images(seed=thread) for thread in range(THREADS)}
    with Classifier(colour_model, "cpu", **SHARED) as alone:
        expected = {thread: alone.classify_batch(images) for thread, images in inputs.items()}
    for thread, predictions in expected.items():
        assert [p.label for p in predictions] == dominant_labels(seed=thread)

    pools: list[ThreadPoolExecutor] = []

    class CountedPool(ThreadPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pools.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(classifier_module, "ThreadPoolExecutor", CountedPool)
    start = threading.Barrier(THREADS)
    got: dict[int, list[list[Prediction]]] = {thread: [] for thread in range(THREADS)}
    errors: list[BaseException] = []

    def work(thread: int, classifier: Classifier) -> None:
        try:
            start.wait()  # every thread's first call (and the pool's creation) at once
            for round_number in range(ROUNDS):
                if round_number % 4 == 3:  # the other entry point shares the same pool and session
                    got[thread].append(classifier.predict(inputs[thread]))
                else:
                    got[thread].append(classifier.classify_batch(inputs[thread]))
        except BaseException as error:
            errors.append(error)

    with Classifier(colour_model, "cpu", **SHARED) as shared:
        workers = [threading.Thread(target=work, args=(thread, shared)) for thread in range(THREADS)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
    assert not errors, errors
    assert not any(worker.is_alive() for worker in workers)
    assert len(pools) == 1  # the first calls of eight threads at once created one pool between them
    for thread in range(THREADS):
        assert len(got[thread]) == ROUNDS
        for predictions in got[thread]:
            assert predictions == expected[thread]
