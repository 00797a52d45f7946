"""The engines ``cifar-bench`` times: one forward function per (variant, provider), or why it cannot run here.

ONNX rows go through the runtime's ``Classifier`` (strict providers: a CUDA row runs only when onnxruntime really
has CUDA active) and are timed on its session directly; PyTorch and TorchScript rows run the module with torch,
on CUDA only when ``torch.cuda.is_available()``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cifar_edge.export.benchmark.artifacts import Variant
from cifar_edge.export.evaluate.models import torch_predictor
from cifar_edge.runtime.providers.strict import ProviderUnavailableError


class RowSkipped(Exception):
    """This row cannot run here (the provider is not active); ``str()`` says why."""


def open_engine(
    variant: Variant, path: Path, reference_module: torch.nn.Module, provider: str, threads: int
) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[], None]]:
    """(forward on float32 NCHW -> scores, close) for one row; RowSkipped when the provider is not active."""
    if variant.engine == "onnx":
        from cifar_edge.runtime.classifier import Classifier

        try:
            classifier = Classifier(path, provider, intra_op_threads=threads)
        except ProviderUnavailableError as error:
            raise RowSkipped(error.cause) from None
        session, io = classifier.session, classifier.io
        dtype = np.float16 if io.input_type == "tensor(float16)" else np.float32

        def forward(batch: np.ndarray) -> np.ndarray:
            return session.run([io.output_name], {io.input_name: batch.astype(dtype, copy=False)})[0]

        return forward, classifier.close
    if provider == "cuda" and not torch.cuda.is_available():
        built = torch.version.cuda
        raise RowSkipped(
            f"torch {torch.__version__} sees no usable CUDA GPU (built with CUDA {built})"
            if built
            else f"torch {torch.__version__} is a CPU-only build"
        )
    device = "cuda" if provider == "cuda" else "cpu"
    if variant.engine == "torchscript":
        from cifar_edge.export.formats.torchscript import load_torchscript

        module = load_torchscript(path)[0]
    else:
        module = reference_module if device == "cpu" else copy.deepcopy(reference_module)
    return torch_predictor(module.to(device), device), lambda: None
