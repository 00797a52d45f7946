"""PyTorch module -> TorchScript file (``torch.jit.trace``), contract and provenance in ``_extra_files``.

TorchScript is deprecated upstream (torch 2.14 warns on trace, save and load); it is kept because users still ask
for it. Tracing, not scripting: the registry's networks have no data-dependent control flow, and tracing works for
any module that runs. ``.pt2`` (exported_program.py) is its successor.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from torch import nn

from cifar_edge.export.errors import ExportFailedError
from cifar_edge.export.formats.onnx import example_input
from cifar_edge.export.quiet import quiet_tools
from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.contract import Contract

TORCHSCRIPT_EXPORTER = "torch.jit.trace"


def export_torchscript(
    module: nn.Module, contract: Contract, path: str | os.PathLike[str], extra_files: dict[str, str]
) -> None:
    try:
        with quiet_tools(), torch.no_grad():
            # check_trace=False: the parity gate compares far more inputs against the eager module than the
            # tracer's own single re-run would.
            traced = torch.jit.trace(module, example_input(contract), check_trace=False)
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer, _extra_files=extra_files)
    except Exception as error:  # tracing raises many types; all mean "this model did not trace"
        raise ExportFailedError(f"TorchScript export failed: {type(error).__name__}: {first_line(error)}") from None
    # Written by us, not by torch: a full disk is then an OSError (a write failure), not an exporter failure.
    Path(path).write_bytes(buffer.getbuffer())


def load_torchscript(path: str | os.PathLike[str], keys: tuple[str, ...] = ()) -> tuple[torch.jit.ScriptModule, dict]:
    """Load a TorchScript file this process wrote (TorchScript files can run arbitrary code: load only your own)."""
    extra_files = dict.fromkeys(keys, "")
    with quiet_tools():
        module = torch.jit.load(os.fspath(path), map_location="cpu", _extra_files=extra_files)
    module.eval()
    return module, extra_files
