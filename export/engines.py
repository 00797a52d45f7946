"""One way to run any model kind on float32 NCHW batches: the parity gate, ``cifar-eval`` and ``cifar-bench`` use it.

ONNX runs through the runtime's ``Classifier`` (strict providers: a CUDA or TensorRT engine exists only when
onnxruntime really has that provider active); PyTorch modules, TorchScript and ``torch.export`` programs run with
torch, on CUDA only when torch sees a GPU. TorchScript and ``.pt2`` files can run code when loaded: open only files
you made or trust. torch is imported only by the torch kinds: running an ONNX file loads none of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cifar_edge.runtime.batching import Forward, run_in_batches
from cifar_edge.runtime.contract import CONTRACT_METADATA_KEY, PROVENANCE_METADATA_KEY
from cifar_edge.runtime.providers.strict import ProviderUnavailableError

if TYPE_CHECKING:
    import torch

METADATA_KEYS = (CONTRACT_METADATA_KEY, PROVENANCE_METADATA_KEY)
# Images per forward pass when a whole set is run (bounded memory; big enough to keep the CPU busy).
BATCH_SIZE = 256


@dataclass
class Engine:
    """A model ready to run: a report name, a batch forward function, the metadata it carries, where it runs."""

    name: str
    forward: Forward
    metadata: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"  # "cpu", "cuda" or "tensorrt": where it really runs
    close: Callable[[], None] = lambda: None
    classifier: Any = None  # ONNX: the runtime Classifier behind it (contract, provenance, threads, notes)

    def run(self, inputs: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Scores for all ``inputs``, ``batch_size`` images per forward call, as float32."""
        return run_in_batches(self.forward, inputs, batch_size).astype(np.float32, copy=False)


def torch_device(provider: str) -> str:
    """auto|cpu|cuda -> the torch device; ProviderUnavailableError when CUDA is asked for and absent."""
    import torch

    if provider == "tensorrt":
        raise ProviderUnavailableError(provider, "TensorRT applies to ONNX models only; use --provider cuda or cpu")
    if provider in ("cuda", "auto"):
        if torch.cuda.is_available():
            return "cuda"
        if provider == "cuda":
            built = torch.version.cuda
            cause = (
                f"torch {torch.__version__} is built with CUDA {built} but sees no usable GPU"
                if built
                else f"torch {torch.__version__} is a CPU-only build"
            )
            raise ProviderUnavailableError(provider, cause)
    return "cpu"


def torch_engine(
    module: Callable[[torch.Tensor], torch.Tensor],
    device: str = "cpu",
    *,
    name: str = "PyTorch",
    metadata: dict[str, Any] | None = None,
) -> Engine:
    """A torch module (already on ``device``, in eval mode) as an engine, run without autograd."""
    import torch

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            inputs = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)
            return module(inputs).float().cpu().numpy()

    return Engine(name, forward, metadata or {}, device)


def torchscript_engine(path: str | os.PathLike[str], device: str = "cpu") -> Engine:
    from cifar_edge.export.formats.torchscript import load_torchscript

    module, extra_files = load_torchscript(path, METADATA_KEYS)
    return torch_engine(module.to(device), device, name="torch.jit", metadata=extra_files)


def exported_program_engine(path: str | os.PathLike[str], device: str = "cpu") -> Engine:
    from cifar_edge.export.formats.exported_program import load_program

    module, extra_files = load_program(path, METADATA_KEYS)
    return torch_engine(module.to(device), device, name="torch.export", metadata=extra_files)


def onnx_engine(path: str | os.PathLike[str], provider: str = "cpu", **classifier_options: Any) -> Engine:
    """An ONNX file through the runtime's Classifier; ProviderUnavailableError when ``provider`` is not active."""
    from cifar_edge.runtime.classifier import Classifier

    classifier = Classifier(path, provider, **classifier_options)
    return Engine(
        name=f"ORT {classifier.providers[0].removesuffix('ExecutionProvider')}",
        forward=classifier.forward,
        metadata=dict(classifier.session.get_modelmeta().custom_metadata_map),
        device=classifier.provider,
        close=classifier.close,
        classifier=classifier,
    )


def artifact_engines(artifact_format: str, path: str | os.PathLike[str]) -> tuple[list[Engine], list[str]]:
    """Every way the gate runs an artifact here: ONNX on the CPU, and on CUDA where it is really active."""
    if artifact_format == "torchscript":
        return [torchscript_engine(path)], []
    if artifact_format == "exportedprogram":
        return [exported_program_engine(path)], []
    if artifact_format != "onnx":
        raise ValueError(f"unknown format {artifact_format!r}")
    from cifar_edge.export.formats.onnx import validate_onnx_file

    validate_onnx_file(path)  # onnx.checker before onnxruntime is trusted with the file
    engines, notes = [onnx_engine(path, "cpu")], []
    try:
        engines.append(onnx_engine(path, "cuda"))
    except ProviderUnavailableError as error:
        notes.append(f"CUDA: not active ({error.cause}); verified on CPU only")
    return engines, notes
