"""Export a trained run to ONNX (fp32, fp16, int8), TorchScript and torch.export, with a parity gate.

Library entry point: :func:`export_run` (what ``cifar-export`` calls). See docs/export.md.
"""

from cifar_edge.export.config import (
    DEFAULT_OPSET,
    ExportConfig,
    ExportError,
    ExportFailedError,
    ExportUsageError,
    Thresholds,
)

# torch and onnx load on first use of these names, so `cifar-export --help` and option errors stay fast.
_LAZY = {
    "ArtifactResult": "cifar_edge.export.results",
    "ExportResult": "cifar_edge.export.results",
    "export_run": "cifar_edge.export.pipeline",
    "FlipAverage": "cifar_edge.train.tta",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cifar_edge.export' has no attribute {name!r}")


__all__ = [
    "DEFAULT_OPSET",
    "ArtifactResult",
    "ExportConfig",
    "ExportError",
    "ExportFailedError",
    "ExportResult",
    "ExportUsageError",
    "FlipAverage",
    "Thresholds",
    "export_run",
]
