"""Find, validate and open an ONNX model file, and read what it carries: its contract and its provenance (whose TTA
mode says how many network passes it runs per image).

Resolution order (first match wins): ``--model PATH``, the ``CIFAR_EDGE_MODEL`` environment variable, then
``runs/latest/model.onnx`` relative to the current directory, where ``runs/latest`` is a symlink to the run folder
or, on file systems without symlinks, a text file holding the run folder's name.

The runtime has no ``onnx`` package, so a file is checked in three steps before anything trusts it: size and
protobuf framing (a cheap top-level walk of the ModelProto: it must hold an IR version and a graph), then
onnxruntime's own loader (which parses and type-checks the whole graph), then the contract in the model metadata
and its agreement with the graph's real input and output.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar_edge.runtime.common.command import ExitCode, first_line
from cifar_edge.runtime.common.names import LATEST_LINK, MODEL_ONNX, RUNS_DIR
from cifar_edge.runtime.contract import CONTRACT_METADATA_KEY, PROVENANCE_METADATA_KEY, Contract, ContractError

MODEL_ENV_VAR = "CIFAR_EDGE_MODEL"
# protobuf refuses messages over 2 GiB; bigger models keep their weights in external data files we do not support.
MAX_MODEL_BYTES = 2**31 - 1
# ModelProto field numbers (onnx.proto): ir_version = 1 (varint), graph = 7 (length-delimited).
_IR_VERSION_FIELD = 1
_GRAPH_FIELD = 7
_SUPPORTED_OUTPUT_KINDS = ("logits", "probabilities")
# Mode -> network passes per image: the mirror image doubles it; flip + shift adds two shifted flipped pairs.
TTA_PASSES: dict[str, int] = {"none": 1, "flip": 2, "flip_shift": 6}


class ModelError(ValueError):
    """The model cannot be used (missing, not ONNX, no or bad contract, contract and graph disagree): exit code 2."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    # How the path was chosen: "--model", "CIFAR_EDGE_MODEL" or "runs/latest".
    origin: str


@dataclass(frozen=True)
class ModelIO:
    """What the session says about the graph's input and output (None marks a dynamic dimension)."""

    input_name: str
    input_shape: tuple[int | None, ...]
    input_type: str
    output_name: str
    output_shape: tuple[int | None, ...]
    output_names: tuple[str, ...] = ()  # every output of the graph

    @property
    def fixed_batch_size(self) -> int | None:
        return self.input_shape[0] if self.input_shape else None


def latest_run_dir(runs_dir: str | os.PathLike[str] = RUNS_DIR) -> Path | None:
    """The folder ``runs/latest`` points to (symlink or pointer text file), or None if there is none."""
    latest = Path(runs_dir) / LATEST_LINK
    if latest.is_symlink() or latest.is_dir():
        return latest if latest.is_dir() else None
    if latest.is_file():
        try:
            name = latest.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if not name or "\n" in name:
            return None
        target = Path(name) if Path(name).is_absolute() else Path(runs_dir) / name
        return target if target.is_dir() else None
    return None


def resolve_model_path(explicit: str | os.PathLike[str] | None = None, runs_dir: str = RUNS_DIR) -> ResolvedModel:
    """Apply the resolution order; raise ModelError naming every place that was tried."""
    if explicit is not None and str(explicit) != "":
        return ResolvedModel(Path(explicit), "--model")
    from_env = os.environ.get(MODEL_ENV_VAR, "").strip()
    if from_env:
        return ResolvedModel(Path(from_env), MODEL_ENV_VAR)
    run_dir = latest_run_dir(runs_dir)
    if run_dir is not None:
        return ResolvedModel(run_dir / MODEL_ONNX, f"{runs_dir}/{LATEST_LINK}")
    raise ModelError(
        f"no model: pass --model PATH, set {MODEL_ENV_VAR}, or export one into the latest run "
        f"({Path(runs_dir) / LATEST_LINK / MODEL_ONNX} not found under {Path.cwd()})"
    )


def check_model_file(path: str | os.PathLike[str]) -> str:
    """Size and protobuf-framing checks; returns the file's sha256. Raises ModelError with a one-line reason."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: model file not found")
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, expected an .onnx file")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"{path}: empty file, not an ONNX model")
    if size > MAX_MODEL_BYTES:
        raise ModelError(f"{path}: {size:,} bytes is over protobuf's 2 GiB limit (external-data models unsupported)")
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            problem = _protobuf_framing_problem(data)
            digest = hashlib.sha256(data).hexdigest()
    except OSError as error:
        raise ModelError(f"{path}: cannot read model file ({error.strerror or error})") from None
    if problem:
        raise ModelError(f"{path}: not an ONNX model ({problem})")
    return digest


def read_contract(metadata: dict[str, str], path: str | os.PathLike[str]) -> Contract:
    """The contract stored under CONTRACT_METADATA_KEY, strictly typed; ModelError when absent or malformed."""
    text = metadata.get(CONTRACT_METADATA_KEY)
    if text is None:
        raise ModelError(
            f"{path}: model carries no cifar-edge contract (metadata key {CONTRACT_METADATA_KEY!r} missing); "
            "export it with cifar-export"
        )
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise ModelError(f"{path}: contract is not valid JSON ({first_line(error)})") from None
    try:
        contract = Contract.from_dict(data)
    except ContractError as error:
        raise ModelError(f"{path}: {first_line(error)}") from None
    if contract.output_kind not in _SUPPORTED_OUTPUT_KINDS:
        kinds = ", ".join(_SUPPORTED_OUTPUT_KINDS)
        raise ModelError(f"{path}: contract output_kind {contract.output_kind!r} is not one of: {kinds}")
    return contract


def read_provenance(metadata: dict[str, str]) -> dict[str, Any] | None:
    """Provenance JSON (informational): None when absent or not a JSON object."""
    text = metadata.get(PROVENANCE_METADATA_KEY)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def passes_per_image(provenance: dict[str, Any] | None) -> int | None:
    """The passes a model file runs per image, from its provenance's TTA mode; None when it does not say."""
    if not isinstance(provenance, dict):
        return None
    return TTA_PASSES.get(provenance.get("tta") or "none") if "tta" in provenance else None


def describe_passes(provenance: dict[str, Any] | None) -> str:
    """'1 pass (no TTA)', '6 passes (flip_shift TTA)' or 'unknown (no provenance)', for reports."""
    passes = passes_per_image(provenance)
    if passes is None or provenance is None:
        return "unknown (the file records no TTA mode)"
    mode = provenance["tta"] or "none"
    return f"{passes} pass{'es' if passes > 1 else ''} ({'no' if mode == 'none' else mode} TTA)"


def check_graph_matches_contract(io: ModelIO, contract: Contract, path: str | os.PathLike[str]) -> None:
    """The contract describes this graph: names, the input form's type and layout (float NCHW, or uint8 NHWC, with
    3 channels and any fixed sides at the contract size), one score per class."""
    problems = []
    if io.input_name != contract.input_name:
        problems.append(f"graph input is {io.input_name!r}, contract says {contract.input_name!r}")
    if io.output_name != contract.output_name:
        names = ", ".join(io.output_names) or io.output_name
        problems.append(f"graph has no output named {contract.output_name!r} as the contract says (outputs: {names})")
    problems += _input_problems(io, contract)
    if io.output_shape and io.output_shape[-1] is not None and io.output_shape[-1] != contract.num_classes:
        problems.append(f"graph outputs {io.output_shape[-1]} scores, contract names {contract.num_classes} classes")
    if problems:
        raise ModelError(f"{path}: model and contract disagree: " + "; ".join(problems))


def _input_problems(io: ModelIO, contract: Contract) -> list[str]:
    """How the graph's input differs from what the contract's input form feeds it."""
    problems = []
    form = f"the contract's input_form is {contract.input_form!r}"
    if contract.takes_pixels:
        layout, expected = "NHWC", (*contract.image_size, 3)
        if io.input_type != "tensor(uint8)":
            problems.append(f"graph input type is {io.input_type}, expected uint8 ({form})")
    else:
        layout, expected = "NCHW", (3, *contract.image_size)
        if io.input_type not in ("tensor(float)", "tensor(float16)"):
            problems.append(f"graph input type is {io.input_type}, expected float32 or float16 ({form})")
    if len(io.input_shape) != 4:
        return [*problems, f"graph input has rank {len(io.input_shape)}, expected 4 ({layout})"]
    for axis, (actual, wanted) in enumerate(zip(io.input_shape[1:], expected, strict=True), start=1):
        if actual is not None and actual != wanted:
            problems.append(f"graph input axis {axis} is {actual}, contract expects {wanted} ({layout})")
    return problems


def check_contract_limits(contract: Contract, path: str | os.PathLike[str], max_pixels: int | None = None) -> None:
    """The contract's input size also fits this run's --max-pixels (the contract itself bounds each side)."""
    height, width = contract.image_size
    if max_pixels is not None and height * width > max_pixels:
        raise ModelError(
            f"{path}: contract image_size {height}x{width} ({height * width:,} pixels) is over --max-pixels "
            f"{max_pixels:,}"
        )


def model_io(session: Any, contract: Contract) -> ModelIO:
    """Read the contract's input and output (or the graph's only ones) from an onnxruntime session."""
    inputs = session.get_inputs()
    outputs = session.get_outputs()
    graph_input = next((i for i in inputs if i.name == contract.input_name), inputs[0] if len(inputs) == 1 else None)
    graph_output = next((o for o in outputs if o.name == contract.output_name), outputs[0] if outputs else None)
    if graph_input is None or graph_output is None:
        names = ", ".join(i.name for i in inputs)
        raise ModelError(f"model has inputs [{names}]; contract input {contract.input_name!r} is not among them")
    return ModelIO(
        input_name=graph_input.name,
        input_shape=tuple(_static_dim(d) for d in graph_input.shape),
        input_type=graph_input.type,
        output_name=graph_output.name,
        output_shape=tuple(_static_dim(d) for d in (graph_output.shape or ())),
        output_names=tuple(o.name for o in outputs),
    )


def _static_dim(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def _protobuf_framing_problem(data: mmap.mmap | bytes) -> str | None:
    """Walk the top-level protobuf fields; return why this is not a ModelProto, or None if it looks like one."""
    position, end = 0, len(data)
    seen: set[int] = set()
    while position < end:
        tag, position = _read_varint(data, position)
        if tag is None:
            return "malformed protobuf field tag"
        field_number, wire_type = tag >> 3, tag & 7
        if field_number == 0:
            return "invalid protobuf field number 0"
        if wire_type == 0:
            _, position = _read_varint(data, position)
            if position is None:
                return "malformed protobuf varint"
        elif wire_type == 1:
            position += 8
        elif wire_type == 2:
            length, position = _read_varint(data, position)
            if length is None:
                return "malformed protobuf length"
            position += length
        elif wire_type == 5:
            position += 4
        else:
            return f"unsupported protobuf wire type {wire_type}"
        if position > end:
            return "file is truncated"
        if field_number == _IR_VERSION_FIELD and wire_type != 0:
            return "ir_version field has the wrong type"
        if field_number == _GRAPH_FIELD and wire_type != 2:
            return "graph field has the wrong type"
        seen.add(field_number)
    if _IR_VERSION_FIELD not in seen:
        return "no ir_version"
    if _GRAPH_FIELD not in seen:
        return "no graph"
    return None


def _read_varint(data: mmap.mmap | bytes, position: int) -> tuple[int | None, Any]:
    result, shift = 0, 0
    while position < len(data) and shift < 64:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
    return None, None
