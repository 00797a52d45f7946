"""The Triton row of the format table: a Triton model repository around the verified ONNX file.

``cifar-export RUN --format triton`` writes, atomically (a temporary folder renamed into place, runtime/common/
atomic_io.py ``atomic_folder``), the repository ``<out>/`` (default ``<run>/triton/``)::

    cifar-edge/config.pbtxt     Triton's ModelConfig (text format): backend, batching, inputs, outputs
    cifar-edge/labels.txt       class names, one per line (the classification extension's label_filename)
    cifar-edge/1/model.onnx     the ONNX row's file (pixel form unless --input float), through the same gate

The model is always named ``cifar-edge`` (``MODEL_NAME``): clients address ``/v2/models/cifar-edge``, and a retrained
model exported again keeps its address. ``cifar-serve`` reads the same config (runtime/serve/repository.py), so one
config drives both servers (docs/serving.md). The row opens the inner model.onnx, so the parity gate, cifar-eval and
cifar-bench run the very file Triton loads.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from cifar_edge.export.config import ExportFailedError
from cifar_edge.export.engines import Engine, OpenOptions, open_onnx
from cifar_edge.export.formats import ArtifactFormat, WriteJob
from cifar_edge.export.formats.onnx import ONNX_EXPORTER, save_artifact, validate_onnx_file
from cifar_edge.runtime.serve.repository import (
    CONFIG_FILE,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_DELAY_US,
    DEFAULT_MODEL_FILE,
    find_model_file,
    read_model_folder,
)

MODEL_NAME = "cifar-edge"
LABELS_FILE = "labels.txt"
VERSION = "1"
BACKEND = "onnxruntime"
# Where the model file lies inside the repository this row writes.
MODEL_FILE_IN_REPOSITORY = f"{MODEL_NAME}/{VERSION}/{DEFAULT_MODEL_FILE}"
# ONNX element types -> Triton's DataType names.
_TRITON_TYPES = {
    onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
}
# The output the classification extension labels: probabilities when the graph has them, else the first output.
_LABELLED_OUTPUT = "probabilities"


def write_triton(job: WriteJob, row: ArtifactFormat, path: Path) -> None:
    """The repository into the (empty, temporary) folder ``path``: the ONNX file first, then its config."""
    folder = path / MODEL_NAME
    version = folder / VERSION
    version.mkdir(parents=True)
    model = onnx.ModelProto()
    model.CopyFrom(job.fp32_graph())
    model_path = version / DEFAULT_MODEL_FILE
    save_artifact(job, row, model, model_path, exporter=ONNX_EXPORTER)
    written = onnx.load_model(str(model_path), load_external_data=False)
    (folder / LABELS_FILE).write_text("".join(f"{name}\n" for name in job.run.contract.class_names), encoding="utf-8")
    (folder / CONFIG_FILE).write_text(model_config(written.graph), encoding="utf-8")


def model_config(graph: onnx.GraphProto, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE) -> str:
    """Triton's config.pbtxt for ``graph`` (dims without the batch axis; dynamic ones as -1)."""
    inputs = [_tensor(value) for value in graph.input]
    labelled = next((value.name for value in graph.output if value.name == _LABELLED_OUTPUT), graph.output[0].name)
    outputs = [_tensor(value, LABELS_FILE if value.name == labelled else None) for value in graph.output]
    separator = ",\n"
    return (
        f'name: "{MODEL_NAME}"\n'
        f'backend: "{BACKEND}"\n'
        f"max_batch_size: {max_batch_size}\n"
        f"input [\n{separator.join(inputs)}\n]\n"
        f"output [\n{separator.join(outputs)}\n]\n"
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {DEFAULT_MAX_QUEUE_DELAY_US}\n}}\n"
        "instance_group [\n  {\n    kind: KIND_CPU\n    count: 1\n  }\n]\n"
    )


def _tensor(value: onnx.ValueInfoProto, label_file: str | None = None) -> str:
    tensor = value.type.tensor_type
    data_type = _TRITON_TYPES.get(tensor.elem_type)
    if data_type is None:
        raise ExportFailedError(f"{value.name}: ONNX element type {tensor.elem_type} has no Triton type here")
    dims = [dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor.shape.dim][1:]  # no batch axis
    lines = [f'    name: "{value.name}"', f"    data_type: {data_type}", f"    dims: [ {', '.join(map(str, dims))} ]"]
    if label_file is not None:
        lines.append(f'    label_filename: "{label_file}"')
    return "  {\n" + "\n".join(lines) + "\n  }"


def check_triton(path: Path) -> None:
    """The gate's check: the config reads (runtime/serve/repository.py), names its folder, and the model file
    passes onnx.checker; ExportFailedError with one line otherwise."""
    from cifar_edge.runtime.model_file import ModelError

    try:
        served = read_model_folder(path / MODEL_NAME)
    except ModelError as error:
        raise ExportFailedError(str(error)) from None
    validate_onnx_file(served.model_path)


def open_triton(path: Path, options: OpenOptions) -> Engine:
    """The opener: the model file of the repository (or model folder) at ``path``, run as any ONNX file."""
    return open_onnx(find_model_file(path), options)
