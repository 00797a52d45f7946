"""The contract and provenance travel inside every artifact and read back with each format's own tools."""

from __future__ import annotations

import hashlib
import json

import onnx
import onnxruntime as ort
import pytest
import torch

from cifar_edge.export import DEFAULT_OPSET
from cifar_edge.runtime.contract import CONTRACT_METADATA_KEY, PROVENANCE_METADATA_KEY, Contract
from cifar_edge.train.run_folder import load_run

pytestmark = [
    pytest.mark.usefixtures("single_torch_thread"),
    # TorchScript is deprecated upstream (see docs/export.md); loading our own file to check it is the point here.
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning"),
]

KEYS = (CONTRACT_METADATA_KEY, PROVENANCE_METADATA_KEY)


def _expected(run_dir):
    run = load_run(run_dir)
    weights_sha256 = hashlib.sha256((run_dir / "model.safetensors").read_bytes()).hexdigest()
    return run.contract, weights_sha256


def _check_provenance(provenance: dict, weights_sha256: str, artifact_format: str) -> None:
    assert provenance["format"] == artifact_format
    assert provenance["precision"] == "fp32"
    assert provenance["source"]["weights_sha256"] == weights_sha256
    assert provenance["metrics"]["steps"] > 0  # the run record's metrics came along
    assert provenance["versions"]["torch"] == torch.__version__.split("+")[0]
    assert provenance["versions"]["onnxruntime"] == ort.__version__
    assert provenance["tta"] == "none" and provenance["exported_at"]


def test_onnx_metadata_reads_back_with_onnx_and_onnxruntime(exported_all) -> None:
    run_dir = exported_all.run_dir
    contract, weights_sha256 = _expected(run_dir)
    path = run_dir / "model.onnx"
    contract = contract.pixel_form()  # the default ONNX file takes pixels: the contract inside says so
    props = {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}
    assert Contract.from_json(props[CONTRACT_METADATA_KEY]) == contract
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    custom = session.get_modelmeta().custom_metadata_map
    assert Contract.from_json(custom[CONTRACT_METADATA_KEY]) == contract
    provenance = json.loads(custom[PROVENANCE_METADATA_KEY])
    _check_provenance(provenance, weights_sha256, "onnx")
    assert provenance["exporter"] == "torch.onnx.export(dynamo=True)" and provenance["opset"] == DEFAULT_OPSET
    assert provenance["input_form"] == "pixels"
    assert session.get_inputs()[0].name == contract.input_name
    assert [output.name for output in session.get_outputs()] == ["probabilities", contract.output_name]


def test_torchscript_metadata_reads_back_from_extra_files(exported_all) -> None:
    run_dir = exported_all.run_dir
    contract, weights_sha256 = _expected(run_dir)
    extra_files = dict.fromkeys(KEYS, "")
    torch.jit.load(str(run_dir / "model.torchscript.pt"), _extra_files=extra_files)  # our own file
    assert Contract.from_json(extra_files[CONTRACT_METADATA_KEY].decode()) == contract
    provenance = json.loads(extra_files[PROVENANCE_METADATA_KEY])
    _check_provenance(provenance, weights_sha256, "torchscript")
    assert provenance["exporter"] == "torch.jit.trace" and provenance["input_form"] == "float"


def test_exported_program_metadata_reads_back_from_extra_files(exported_all) -> None:
    run_dir = exported_all.run_dir
    contract, weights_sha256 = _expected(run_dir)
    extra_files = dict.fromkeys(KEYS, "")
    torch.export.load(str(run_dir / "model.pt2"), extra_files=extra_files)  # our own file
    assert Contract.from_json(extra_files[CONTRACT_METADATA_KEY]) == contract
    _check_provenance(json.loads(extra_files[PROVENANCE_METADATA_KEY]), weights_sha256, "exportedprogram")
