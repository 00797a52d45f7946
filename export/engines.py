"""An Engine: a model ready to run on float32 NCHW batches, whatever its kind. The format table's openers return one;
the parity gate, ``cifar-eval`` and ``cifar-bench`` run them all the same way.

A file in the pixel input form (uint8 NHWC pixels in, formats/pixels.py) makes an engine that takes both: its own
input, uint8 (N, H, W, 3) pixels of any size (``takes_pixels``: cifar-eval hands it the pixels, the parity gate
images at their original sizes), and the float32 NCHW batches every engine takes, turned back into the pixels they
were made from (``pixels_from_inputs``: exact for inputs normalised from uint8 pixels, the only kind the gate,
cifar-eval and cifar-bench make). Either way onnxruntime gets pixels, as on a user's device.

The two ways to run: ONNX through the runtime's ``Classifier`` (strict providers: a CUDA or TensorRT engine exists
only when onnxruntime really has that provider active), and torch modules (a run's network, TorchScript, ``.pt2``)
with torch, on CUDA only when torch sees a GPU. torch is imported only by the torch kinds: running an ONNX file loads
none of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cifar_edge.runtime.session import Forward, ProviderUnavailableError, forward_in_batches

if TYPE_CHECKING:
    import torch

    from cifar_edge.runtime.contract import Contract

# Images per forward pass when a whole set is run (bounded memory; big enough to keep the CPU busy).
BATCH_SIZE = 256


@dataclass(frozen=True)
class OpenOptions:
    """How to open a model: where it runs and with how many threads (what every opener of the format table takes)."""

    provider: str = "cpu"  # auto | cpu | cuda | tensorrt; explicit ones are strict (ProviderUnavailableError)
    threads: int | None = None  # intra-op threads; None: the runtime's default
    batch_size: int | None = None  # ONNX: the Classifier's batch size; None: its default
    max_pixels: int | None = None  # ONNX: the Classifier's decoded-image limit


@dataclass
class Engine:
    """A model ready to run: a report name, a batch forward function, the metadata it carries, where it runs."""

    name: str
    forward: Forward
    metadata: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"  # "cpu", "cuda" or "tensorrt": where it really runs
    close: Callable[[], None] = lambda: None
    classifier: Any = None  # ONNX: the runtime Classifier behind it (contract, provenance, threads, notes)
    takes_pixels: bool = False  # ``forward`` also takes uint8 (N, H, W, 3) pixels of any size (the pixel form)

    def run(self, inputs: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Scores for all ``inputs``, ``batch_size`` images per forward call, as float32."""
        return forward_in_batches(self.forward, inputs, batch_size).astype(np.float32, copy=False)


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


def onnx_engine(path: str | os.PathLike[str], provider: str = "cpu", **classifier_options: Any) -> Engine:
    """An ONNX file through the runtime's Classifier; ProviderUnavailableError when ``provider`` is not active."""
    from cifar_edge.runtime.classifier import Classifier

    classifier = Classifier(path, provider, **classifier_options)
    contract = classifier.contract
    return Engine(
        name=f"ORT {classifier.providers[0].removesuffix('ExecutionProvider')}",
        forward=_pixel_forward(classifier.forward, contract) if contract.takes_pixels else classifier.forward,
        metadata=dict(classifier.session.get_modelmeta().custom_metadata_map),
        device=classifier.provider,
        close=classifier.close,
        classifier=classifier,
        takes_pixels=contract.takes_pixels,
    )


def _pixel_forward(forward: Forward, contract: Contract) -> Forward:
    """A pixel-form model's forward (uint8 NHWC pixels) that also takes normalised float32 NCHW batches."""

    def either(batch: np.ndarray) -> np.ndarray:
        return forward(batch if batch.dtype == np.uint8 else pixels_from_inputs(batch, contract))

    return either


def pixels_from_inputs(inputs: np.ndarray, contract: Contract) -> np.ndarray:
    """float32 (N, 3, H, W) ``(pixel / 255 - mean) / std`` -> the uint8 (N, H, W, 3) pixels: ``normalize_batch``
    undone. Exact for inputs made from uint8 pixels (tested on every RGB triple): float32 keeps each value within
    1e-4 of its pixel, and rounding (+0.5, then truncation) removes that. About 6 us per 32x32 image."""
    scale = (np.float32(255.0) * np.asarray(contract.std, np.float32)).reshape(1, 3, 1, 1)
    offset = (np.float32(255.0) * np.asarray(contract.mean, np.float32) + np.float32(0.5)).reshape(1, 3, 1, 1)
    values = np.multiply(inputs, scale, dtype=np.float32)
    values += offset
    np.clip(values, 0.0, 255.5, out=values)
    return np.ascontiguousarray(values.astype(np.uint8).transpose(0, 2, 3, 1))


def open_onnx(path: Path, options: OpenOptions) -> Engine:
    """The opener of the format table's ONNX rows: the torch-free runtime's Classifier, as ``options`` ask."""
    sizes = {"batch_size": options.batch_size} if options.batch_size is not None else {}
    return onnx_engine(path, options.provider, intra_op_threads=options.threads, max_pixels=options.max_pixels, **sizes)
