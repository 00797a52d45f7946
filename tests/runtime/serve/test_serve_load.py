"""Many clients at once: every answer is its own image's (no mixed-up batch slots), a client that goes away costs
the others nothing, a full queue answers 503 with Retry-After, and SIGTERM drains: every accepted request is
answered 200 and the process exits 0."""

from __future__ import annotations

import io
import json
import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from serve_helpers import Server, running

from cifar_edge.runtime.classifier import Classifier

pytestmark = pytest.mark.timeout(180)
CLIENTS = 64


def binary_infer_body(images: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """An infer request with the images as a binary UINT8 tensor (the binary tensor extension)."""
    header = {
        "inputs": [
            {
                "name": "pixels",
                "datatype": "UINT8",
                "shape": list(images.shape),
                "parameters": {"binary_data_size": images.nbytes},
            }
        ],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
    }
    encoded = json.dumps(header).encode()
    return encoded + images.tobytes(), {"Inference-Header-Content-Length": str(len(encoded))}


def logits_of(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    header = json.loads(response.content[:length])
    (output,) = header["outputs"]
    return np.frombuffer(response.content[length:], dtype="<f4").reshape(output["shape"])


def _images(count: int) -> np.ndarray:
    return np.random.default_rng(11).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def _infer(server: Server, image: np.ndarray) -> httpx.Response:
    body, headers = binary_infer_body(image[None])
    return httpx.post(server.url + "/v2/models/conv_pixels/infer", content=body, headers=headers, timeout=60)


def _classify(server: Server, image: np.ndarray) -> httpx.Response:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    url = server.url + "/v2/models/conv_pixels/classify"
    return httpx.post(url, content=buffer.getvalue(), params={"top_k": 10}, timeout=60)


def _abandon(server: Server, partial: bool) -> None:
    """A client that goes away: mid-body (``partial``), or right after sending a whole request."""
    body, headers = binary_infer_body(_images(1))
    lines = ["POST /v2/models/conv_pixels/infer HTTP/1.1", f"Host: {server.address}", f"Content-Length: {len(body)}"]
    lines += [f"{key}: {value}" for key, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body[: len(body) // 2] if partial else body)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(request)


def test_64_clients_each_get_their_own_answer(pixel_server: Server, form_models: dict[str, Path]) -> None:
    images = _images(CLIENTS)
    with Classifier(form_models["pixels"], "cpu") as classifier:
        expected = classifier.forward(images)
        labels = [prediction.index for prediction in classifier.classify_batch(images, top_k=1)]

    def client(number: int) -> np.ndarray | int:
        if number % 8 == 0:
            _abandon(pixel_server, partial=number % 16 == 0)
        if number % 2:
            return int(_classify(pixel_server, images[number]).json()["index"])
        return logits_of(_infer(pixel_server, images[number]))[0]

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(client, range(CLIENTS)))
    for number, answer in enumerate(answers):
        if number % 2:
            assert answer == labels[number], number
        else:
            np.testing.assert_allclose(answer, expected[number], rtol=1e-5, atol=1e-5, err_msg=str(number))
    metrics = httpx.get(pixel_server.url + "/metrics", timeout=10).text
    batches = float(re.search(r"^cifar_serve_batch_size_count (\S+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
    assert httpx.get(pixel_server.url + "/v2/health/ready", timeout=10).status_code == 200
    assert batches < CLIENTS + 1, "requests were never batched together"
    assert "Traceback" not in pixel_server.stderr()  # clients that went away are one log line each, not errors


def _queued(server: Server) -> float:
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    return float(re.search(r"^cifar_serve_queued (\S+)$", metrics, re.M).group(1))  # type: ignore[union-attr]


def test_full_queue_is_503_and_sigterm_answers_every_accepted_request(
    form_models: dict[str, Path], tmp_path: Path
) -> None:
    images = _images(CLIENTS)
    args = ["--max-batch-size", "256", "--max-queue-delay-ms", "20000", "--max-queue-size", CLIENTS]
    with running(form_models["pixels"], tmp_path / "serve.log", *args) as server, ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(_infer, server, images[number]) for number in range(CLIENTS)]
        deadline = time.monotonic() + 60
        while _queued(server) < CLIENTS:
            assert time.monotonic() < deadline, "the clients' requests never all reached the queue"
            time.sleep(0.05)
        refused = _infer(server, images[0])
        assert refused.status_code == 503 and "error" in refused.json()
        assert refused.headers["Retry-After"] == "1"
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        answers = [future.result(timeout=60) for future in futures]
        assert server.process.wait(timeout=30) == 0, server.stderr()
        assert time.monotonic() - started < 15  # drained at once, not after the 20 s gathering window
    with Classifier(form_models["pixels"], "cpu") as classifier:
        expected = classifier.forward(images)
    for number, answer in enumerate(answers):
        np.testing.assert_allclose(logits_of(answer)[0], expected[number], rtol=1e-5, atol=1e-5)
