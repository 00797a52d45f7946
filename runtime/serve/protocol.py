"""The Open Inference Protocol (KServe v2) over HTTP, as cifar-serve speaks it: what a model says about itself
(metadata, Triton's JSON model configuration), and an infer request's body -> one checked tensor, and the model's
scores -> the answer's body.

JSON tensors and the binary tensor extension (``Inference-Header-Content-Length``: the JSON header first, then each
binary input's bytes in input order, sized by ``parameters.binary_data_size``) are both read; outputs are JSON
unless ``binary_data_output`` (request) or an output's ``binary_data`` asks for bytes. The classification extension
(``parameters.classification = k``) answers BYTES strings ``"score:index:label"``, the k best by the output's value.
Nothing here touches the model or the event loop: plain bytes and numpy in, bytes out.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.predictions import softmax

PLATFORM = "onnxruntime_onnx"
BINARY_HEADER = "Inference-Header-Content-Length"
# Open Inference Protocol datatype -> numpy type (the ones a cifar-edge model takes or gives).
DATATYPES: dict[str, Any] = {"UINT8": np.uint8, "FP16": np.float16, "FP32": np.float32}


class ProtocolError(ValueError):
    """A request the protocol refuses: ``status`` is the HTTP status of the one-line ``{"error": ...}`` answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ModelSpec:
    """What clients are told about the served model, and what its tensors must look like."""

    name: str
    contract: Contract
    input_name: str
    input_datatype: str  # UINT8 (pixel form), FP32 or FP16 (float form)
    input_shape: tuple[int, ...]  # -1 for a dimension the request chooses, the batch first
    outputs: tuple[str, ...]  # the contract's output first; "probabilities" too when the graph has it
    max_batch_size: int
    max_queue_delay_us: int

    @property
    def kind(self) -> str:
        return "pixels" if self.contract.takes_pixels else "float"


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool
    classification: int = 0  # k > 0: the k best classes as "score:index:label" strings


@dataclass(frozen=True)
class InferRequest:
    tensor: np.ndarray
    outputs: tuple[RequestedOutput, ...]
    request_id: str | None = None


@dataclass(frozen=True)
class EncodedAnswer:
    body: bytes
    header_length: int | None = None  # the JSON header's length when binary tensors follow it


def model_spec(
    contract: Contract, graph_outputs: tuple[str, ...], *, name: str, batching: tuple[int, int]
) -> ModelSpec:
    """The spec of a model whose contract is ``contract``; ``batching`` = (max_batch_size, max_queue_delay_us)."""
    outputs = [contract.output_name]
    if contract.output_kind == "logits" and "probabilities" in graph_outputs:
        outputs.insert(0, "probabilities")
    if contract.takes_pixels:
        shape: tuple[int, ...] = (-1, -1, -1, 3)
        datatype = "UINT8"
    else:
        height, width = contract.image_size
        shape = (-1, 3, height, width)
        datatype = "FP32"
    return ModelSpec(
        name=name,
        contract=contract,
        input_name=contract.input_name,
        input_datatype=datatype,
        input_shape=shape,
        outputs=tuple(outputs),
        max_batch_size=batching[0],
        max_queue_delay_us=batching[1],
    )


def model_metadata(spec: ModelSpec) -> dict[str, Any]:
    """``GET /v2/models/{name}``."""
    classes = spec.contract.num_classes
    return {
        "name": spec.name,
        "versions": ["1"],
        "platform": PLATFORM,
        "inputs": [{"name": spec.input_name, "datatype": spec.input_datatype, "shape": list(spec.input_shape)}],
        "outputs": [{"name": name, "datatype": "FP32", "shape": [-1, classes]} for name in spec.outputs],
    }


def model_config(spec: ModelSpec) -> dict[str, Any]:
    """``GET /v2/models/{name}/config``: Triton's model configuration as JSON (dims without the batch dimension)."""
    config: dict[str, Any] = {
        "name": spec.name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "max_batch_size": spec.max_batch_size,
        "input": [
            {
                "name": spec.input_name,
                "data_type": f"TYPE_{spec.input_datatype}",
                "format": "FORMAT_NHWC" if spec.kind == "pixels" else "FORMAT_NCHW",
                "dims": list(spec.input_shape[1:]),
            }
        ],
        "output": [
            {"name": name, "data_type": "TYPE_FP32", "dims": [spec.contract.num_classes]} for name in spec.outputs
        ],
        "parameters": {"class_names": {"string_value": ",".join(spec.contract.class_names)}},
    }
    if spec.max_batch_size > 1:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": spec.max_queue_delay_us}
    return config


def parse_infer_request(body: bytes, header_length: str | None, spec: ModelSpec) -> InferRequest:
    """An infer request's body (and its Inference-Header-Content-Length, if any) -> the checked input tensor."""
    json_end = len(body)
    if header_length is not None:
        try:
            json_end = int(header_length)
        except ValueError:
            raise ProtocolError(f"{BINARY_HEADER} is not an integer: {header_length[:40]!r}") from None
        if not 0 < json_end <= len(body):
            raise ProtocolError(f"{BINARY_HEADER} is {json_end}, but the body has {len(body)} bytes")
    try:
        header = json.loads(body[:json_end])
    except (ValueError, UnicodeDecodeError) as error:
        raise ProtocolError(f"the request is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise ProtocolError("the request must be a JSON object")
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ProtocolError(f"the request must have exactly one input, {spec.input_name!r}")
    tensor = _input_tensor(inputs[0], memoryview(body)[json_end:], spec)
    parameters = header.get("parameters") or {}
    binary_default = isinstance(parameters, dict) and parameters.get("binary_data_output") is True
    request_id = header.get("id")
    return InferRequest(
        tensor=tensor,
        outputs=_requested_outputs(header.get("outputs"), spec, binary_default),
        request_id=request_id if isinstance(request_id, str) else None,
    )


def _input_tensor(entry: dict[str, Any], binary: memoryview, spec: ModelSpec) -> np.ndarray:
    name, datatype, shape = entry.get("name"), entry.get("datatype"), entry.get("shape")
    if name != spec.input_name:
        raise ProtocolError(f"unknown input {name!r}: this model's input is {spec.input_name!r}")
    if datatype != spec.input_datatype:
        raise ProtocolError(f"input {name!r} must be {spec.input_datatype}, got {datatype!r}")
    if not isinstance(shape, list) or not all(isinstance(dim, int) and not isinstance(dim, bool) for dim in shape):
        raise ProtocolError(f"input {name!r} needs a shape: a list of integers")
    _check_shape(shape, spec)
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    count = int(np.prod(shape))
    parameters = entry.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size != len(binary):
            raise ProtocolError(f"binary_data_size is {size!r}, but {len(binary)} bytes follow the JSON header")
        if size != count * dtype.itemsize:
            raise ProtocolError(f"input {name!r} of shape {shape} needs {count * dtype.itemsize} bytes, got {size}")
        return np.frombuffer(binary, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    if len(binary):
        raise ProtocolError(f"{len(binary)} bytes follow the JSON header, but no input has binary_data_size")
    return _json_tensor(entry.get("data"), shape, dtype.newbyteorder("="))


def _check_shape(shape: list[int], spec: ModelSpec) -> None:
    if len(shape) != len(spec.input_shape) or shape[0] < 1:
        raise ProtocolError(f"input shape {shape} does not match {list(spec.input_shape)} (batch first, at least 1)")
    for dim, wanted in zip(shape[1:], spec.input_shape[1:], strict=True):
        if dim < 1 or (wanted != -1 and dim != wanted):
            raise ProtocolError(f"input shape {shape} does not match {list(spec.input_shape)}")


def _json_tensor(data: Any, shape: list[int], dtype: np.dtype[Any]) -> np.ndarray:
    if not isinstance(data, list):
        raise ProtocolError("an input without binary_data_size needs its values in 'data' (a list)")
    try:
        values = np.asarray(data)
    except ValueError:
        raise ProtocolError("'data' is not a regular array of numbers") from None
    if values.dtype.kind not in "iuf" or values.dtype.kind == "b":
        raise ProtocolError(f"'data' must hold numbers, got {values.dtype.kind!r} values")
    if values.size != int(np.prod(shape)):
        raise ProtocolError(f"'data' has {values.size} values, shape {shape} needs {int(np.prod(shape))}")
    if dtype.kind == "u":
        if values.dtype.kind == "f" or (values.size and (values.min() < 0 or values.max() > 255)):
            raise ProtocolError("UINT8 'data' must be integers 0..255")
    elif values.size and not np.isfinite(values).all():
        raise ProtocolError("'data' holds values that are not finite")
    return values.astype(dtype).reshape(shape)


def _requested_outputs(outputs: Any, spec: ModelSpec, binary_default: bool) -> tuple[RequestedOutput, ...]:
    if outputs is None:
        return tuple(RequestedOutput(name, binary_default) for name in spec.outputs)
    if not isinstance(outputs, list) or not outputs:
        raise ProtocolError("'outputs' must be a non-empty list")
    requested = []
    for entry in outputs:
        name = entry.get("name") if isinstance(entry, dict) else None
        if name not in spec.outputs:
            raise ProtocolError(f"unknown output {name!r}: this model gives {', '.join(spec.outputs)}")
        parameters = entry.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ProtocolError(f"output {name!r}: 'parameters' must be an object")
        binary = parameters.get("binary_data", binary_default)
        classes = parameters.get("classification", 0)
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 0:
            raise ProtocolError(f"output {name!r}: classification must be a non-negative integer")
        requested.append(RequestedOutput(name, binary is True, min(classes, spec.contract.num_classes)))
    return tuple(requested)


def encode_infer_answer(spec: ModelSpec, request: InferRequest, scores: np.ndarray) -> EncodedAnswer:
    """The model's (N, classes) scores (the contract's output) -> the answer's body, JSON or JSON + binary."""
    values = {spec.contract.output_name: np.asarray(scores, dtype=np.float32)}
    if "probabilities" in spec.outputs and spec.contract.output_name != "probabilities":
        values["probabilities"] = softmax(scores).astype(np.float32)
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for output in request.outputs:
        value = values[output.name]
        if output.classification:
            strings = classification_strings(value, spec.contract.class_names, output.classification)
            entry, blob = _bytes_entry(output, strings)
        else:
            entry = {"name": output.name, "datatype": "FP32", "shape": list(value.shape)}
            blob = value.astype("<f4").tobytes() if output.binary else None
            if blob is None:
                entry["data"] = [float(x) for x in value.ravel()]
        if blob is not None:
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        entries.append(entry)
    answer: dict[str, Any] = {"model_name": spec.name, "model_version": "1", "outputs": entries}
    if request.request_id is not None:
        answer["id"] = request.request_id
    header = json.dumps(answer, allow_nan=False).encode()
    if not blobs:
        return EncodedAnswer(header)
    return EncodedAnswer(header + b"".join(blobs), header_length=len(header))


def classification_strings(values: np.ndarray, class_names: tuple[str, ...], k: int) -> np.ndarray:
    """(N, classes) values -> (N, k) strings ``"value:index:label"``, largest value first (ties in class order)."""
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    rows = [[f"{row[i]:f}:{int(i)}:{class_names[i]}" for i in best] for row, best in zip(values, order, strict=True)]
    return np.array(rows, dtype=object).reshape(len(values), k)


def _bytes_entry(output: RequestedOutput, strings: np.ndarray) -> tuple[dict[str, Any], bytes | None]:
    entry: dict[str, Any] = {"name": output.name, "datatype": "BYTES", "shape": list(strings.shape)}
    if not output.binary:
        entry["data"] = [str(item) for item in strings.ravel()]
        return entry, None
    encoded = [str(item).encode() for item in strings.ravel()]
    return entry, b"".join(struct.pack("<I", len(item)) + item for item in encoded)
