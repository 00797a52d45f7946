"""PyTorch module -> ``torch.export`` ExportedProgram file (``.pt2``), TorchScript's successor.

The batch axis is dynamic; contract and provenance go into the archive's ``extra_files``. Loading a ``.pt2``
unpickles parts of it (torch.export.load), so, like TorchScript, only load files you made or trust.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from torch import nn

from cifar_edge.export.errors import ExportFailedError
from cifar_edge.export.formats.onnx import BATCH_AXIS_NAME, example_input
from cifar_edge.export.quiet import quiet_tools
from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.contract import Contract

EXPORTED_PROGRAM_EXPORTER = "torch.export.export + torch.export.save"


def export_program(
    module: nn.Module, contract: Contract, path: str | os.PathLike[str], extra_files: dict[str, str]
) -> None:
    batch = torch.export.Dim(BATCH_AXIS_NAME, min=1)
    try:
        with quiet_tools(), torch.no_grad():
            program = torch.export.export(module, (example_input(contract),), dynamic_shapes=({0: batch},))
            buffer = io.BytesIO()
            torch.export.save(program, buffer, extra_files=extra_files)
    except Exception as error:  # torch.export raises many types; all mean "this model did not export"
        message = f"exported-program export failed: {type(error).__name__}: {first_line(error)}"
        raise ExportFailedError(message) from None
    # Written by us, not by torch: a full disk is then an OSError (a write failure), not an exporter failure.
    Path(path).write_bytes(buffer.getbuffer())


def load_program(path: str | os.PathLike[str], keys: tuple[str, ...] = ()) -> tuple[nn.Module, dict]:
    """Load a ``.pt2`` this process wrote; returns the callable module and the requested extra files."""
    extra_files = dict.fromkeys(keys, "")
    with quiet_tools(), open(path, "rb") as handle:
        program = torch.export.load(handle, extra_files=extra_files)
    return program.module(), extra_files
