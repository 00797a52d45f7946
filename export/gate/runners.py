"""Run an exported artifact on float32 NCHW batches, the way its users will.

ONNX: onnxruntime's CPU provider always, and CUDA too when that provider really is active (onnxruntime silently
falls back to CPU when CUDA cannot load, so ``session.get_providers()`` is checked after creating the session).
TorchScript and exported programs: torch on CPU. Every runner also returns the metadata the artifact carries.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from cifar_edge.export.formats.exported_program import load_program
from cifar_edge.export.formats.onnx import validate_onnx_file
from cifar_edge.export.formats.torchscript import load_torchscript
from cifar_edge.runtime.contract import CONTRACT_METADATA_KEY, PROVENANCE_METADATA_KEY, Contract
from cifar_edge.runtime.errors import first_line

METADATA_KEYS = (CONTRACT_METADATA_KEY, PROVENANCE_METADATA_KEY)
# Images per forward pass while verifying (bounded memory; big enough to keep the CPU busy).
VERIFY_BATCH = 256
# onnxruntime log severity: 3 = errors only (its warnings about unused initializers are noise here).
_ORT_LOG_ERRORS_ONLY = 3

Forward = Callable[[np.ndarray], np.ndarray]


@dataclass
class Backend:
    """One way of running the artifact: a name for reports, a batch forward function and the embedded metadata."""

    name: str
    forward: Forward
    metadata: dict[str, str | bytes]
    notes: list[str] = field(default_factory=list)

    def run(self, inputs: np.ndarray, batch_size: int = VERIFY_BATCH) -> np.ndarray:
        outputs = [self.forward(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)]
        return np.concatenate(outputs) if outputs else np.zeros((0,), dtype=np.float32)


def onnx_session(path: str | os.PathLike[str], provider: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_LOG_ERRORS_ONLY
    providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
    return ort.InferenceSession(os.fspath(path), sess_options=options, providers=providers)


def onnx_backends(path: str | os.PathLike[str], contract: Contract) -> tuple[list[Backend], list[str]]:
    """CPU backend, plus CUDA when it truly runs; validates the file with onnx.checker before trusting it."""
    validate_onnx_file(path)
    backends, notes = [], []
    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        providers.append("CUDAExecutionProvider")
    else:
        notes.append("CUDA: this onnxruntime build has no CUDAExecutionProvider; verified on CPU only")
    for provider in providers:
        try:
            session = onnx_session(path, provider)
        except Exception as error:  # a provider that fails to initialise is reported, the CPU result still counts
            if provider == "CPUExecutionProvider":
                raise
            notes.append(f"CUDA: session creation failed ({first_line(error)}); verified on CPU only")
            continue
        active = session.get_providers()[0]
        if active != provider:
            notes.append(f"CUDA: listed but not active (onnxruntime fell back to {active}); verified on CPU only")
            continue
        backends.append(
            Backend(
                name=f"ORT {provider.removesuffix('ExecutionProvider')}",
                forward=_onnx_forward(session, contract),
                metadata=dict(session.get_modelmeta().custom_metadata_map),
            )
        )
    return backends, notes


def _onnx_forward(session: ort.InferenceSession, contract: Contract) -> Forward:
    def forward(batch: np.ndarray) -> np.ndarray:
        return session.run([contract.output_name], {contract.input_name: np.ascontiguousarray(batch)})[0]

    return forward


def _torch_forward(module: Callable[[torch.Tensor], torch.Tensor]) -> Forward:
    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(np.ascontiguousarray(batch))).float().numpy()

    return forward


def torchscript_backends(path: str | os.PathLike[str]) -> tuple[list[Backend], list[str]]:
    module, extra_files = load_torchscript(path, METADATA_KEYS)
    return [Backend("torch.jit", _torch_forward(module), extra_files)], []


def exported_program_backends(path: str | os.PathLike[str]) -> tuple[list[Backend], list[str]]:
    module, extra_files = load_program(path, METADATA_KEYS)
    return [Backend("torch.export", _torch_forward(module), extra_files)], []


def backends_for(artifact_format: str, path: Path, contract: Contract) -> tuple[list[Backend], list[str]]:
    if artifact_format == "onnx":
        return onnx_backends(path, contract)
    if artifact_format == "torchscript":
        return torchscript_backends(path)
    if artifact_format == "exportedprogram":
        return exported_program_backends(path)
    raise ValueError(f"unknown format {artifact_format!r}")
