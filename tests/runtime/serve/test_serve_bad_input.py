"""Bad requests of every kind get a clean 4xx with ``{"error": ...}``; the server keeps serving, its memory flat."""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image
from serve_helpers import Server

pytestmark = pytest.mark.timeout(120)
INFER = "/v2/models/conv_pixels/infer"
CLASSIFY = "/v2/models/conv_pixels/classify"
LENGTH = "Inference-Header-Content-Length"


def _tensor_request(**changes: object) -> dict[str, object]:
    entry: dict[str, object] = {"name": "pixels", "datatype": "UINT8", "shape": [1, 2, 2, 3], "data": list(range(12))}
    entry.update(changes)
    return {"inputs": [entry]}


def _binary(header: dict[str, object], payload: bytes, length: int | None = None) -> tuple[bytes, dict[str, str]]:
    encoded = json.dumps(header).encode()
    return encoded + payload, {LENGTH: str(len(encoded) if length is None else length)}


def _bomb_png() -> bytes:
    """A valid PNG whose header claims 30,000 x 30,000 pixels (the decoder must refuse it before decoding)."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", 30_000, 30_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _bad_requests() -> Iterator[tuple[str, str, dict[str, object]]]:
    """(name, path, httpx.post keyword arguments) of each bad request."""
    shape_3072 = {"binary_data_size": 3072}
    binary_entry = {"name": "pixels", "datatype": "UINT8", "shape": [1, 32, 32, 3], "parameters": shape_3072}
    cases: dict[str, tuple[str, dict[str, object]]] = {
        "malformed json": (INFER, {"content": b'{"inputs": [{"name": '}),
        "not an object": (INFER, {"json": [1, 2, 3]}),
        "no inputs": (INFER, {"json": {"outputs": []}}),
        "wrong input name": (INFER, {"json": _tensor_request(name="images")}),
        "wrong datatype": (INFER, {"json": _tensor_request(datatype="FP32")}),
        "wrong rank": (INFER, {"json": _tensor_request(shape=[1, 4, 3])}),
        "four channels": (INFER, {"json": _tensor_request(shape=[1, 1, 3, 4])}),
        "empty batch": (INFER, {"json": _tensor_request(shape=[0, 2, 2, 3], data=[])}),
        "too few values": (INFER, {"json": _tensor_request(data=[1, 2, 3])}),
        "values out of range": (INFER, {"json": _tensor_request(data=[300] * 12)}),
        "strings as values": (INFER, {"json": _tensor_request(data=["a"] * 12)}),
        "ragged values": (INFER, {"json": _tensor_request(data=[[1, 2], [3]])}),
        "unknown output": (INFER, {"json": {**_tensor_request(), "outputs": [{"name": "features"}]}}),
        "negative classification": (
            INFER,
            {"json": {**_tensor_request(), "outputs": [{"name": "logits", "parameters": {"classification": -1}}]}},
        ),
    }
    header = {"inputs": [binary_entry]}
    lying = {
        "header length past the body": _binary(header, bytes(3072), length=10**6),
        "header length not a number": _binary(header, bytes(3072), length=None),
        "header length cuts the json": _binary(header, bytes(3072), length=20),
        "binary_data_size larger than sent": _binary(header, bytes(1000)),
        "binary_data_size smaller than sent": _binary(header, bytes(4000)),
        "binary_data_size not the shape's": _binary(
            {"inputs": [{**binary_entry, "parameters": {"binary_data_size": 3000}}]}, bytes(3000)
        ),
        "bytes but no binary input": _binary(_tensor_request(), bytes(10)),
    }
    for name, (content, headers) in lying.items():
        if name == "header length not a number":
            headers = {LENGTH: "twelve"}
        cases[name] = (INFER, {"content": content, "headers": headers})
    cases["not an image"] = (CLASSIFY, {"content": b"hello, I am a text file\n"})
    cases["decompression bomb"] = (CLASSIFY, {"content": _bomb_png()})
    cases["truncated image"] = (CLASSIFY, {"content": _png_bytes()[:60]})
    cases["empty body"] = (CLASSIFY, {"content": b""})
    cases["form without a file"] = (CLASSIFY, {"data": {"field": "value"}, "files": {}})
    cases["oversized body"] = (INFER, {"content": bytes(2 << 20)})
    cases["oversized streamed body"] = (CLASSIFY, {"content": iter([bytes(256 << 10)] * 8)})
    cases["unknown model"] = ("/v2/models/nope/infer", {"json": _tensor_request()})
    cases["unknown model, classify"] = ("/v2/models/nope/classify", {"content": _png_bytes()})
    cases["unknown version"] = ("/v2/models/conv_pixels/versions/7/infer", {"json": _tensor_request()})
    for name, (path, arguments) in cases.items():
        yield name, path, arguments


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


EXPECTED_STATUS = {
    "oversized body": 413,
    "oversized streamed body": 413,
    "unknown model": 404,
    "unknown model, classify": 404,
    "unknown version": 404,
}


def test_every_bad_request_is_a_clean_4xx_and_the_server_keeps_serving(pixel_server: Server) -> None:
    def send_all() -> None:
        with httpx.Client(base_url=pixel_server.url, timeout=30) as client:
            for name, path, arguments in _bad_requests():
                answer = client.post(path, **arguments)  # type: ignore[arg-type]
                assert answer.status_code == EXPECTED_STATUS.get(name, 400), (name, answer.text)
                error = answer.json()["error"]
                assert isinstance(error, str) and error and "\n" not in error, name

    send_all()
    before = pixel_server.rss_kib()
    for _ in range(5):
        send_all()
    assert pixel_server.rss_kib() < before * 1.1, "memory grew with bad requests"
    assert httpx.get(pixel_server.url + "/v2/health/ready", timeout=10).status_code == 200
    good = httpx.post(pixel_server.url + CLASSIFY, content=_png_bytes(), timeout=30)
    assert good.status_code == 200 and "label" in good.json()


def test_unknown_route_and_method_are_json_errors(pixel_server: Server) -> None:
    assert httpx.get(pixel_server.url + "/v2/nothing", timeout=10).json() == {"error": "Not Found"}
    wrong_method = httpx.get(pixel_server.url + INFER, timeout=10)
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
