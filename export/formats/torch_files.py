"""The torch rows of the format table: TorchScript (``.pt``) and ``torch.export`` programs (``.pt2``), written and
opened, with the run's contract and provenance inside the file.

TorchScript (``torch.jit.trace``): deprecated upstream (torch 2.14 warns on trace, save and load); kept because users
still ask for it. Tracing, not scripting: the registry's networks have no data-dependent control flow, and tracing
works for any module that runs. Contract and provenance go into ``_extra_files``.

``torch.export`` (TorchScript's successor): the batch axis is dynamic; contract and provenance go into the archive's
``extra_files``. Both kinds can run code when loaded (``torch.jit.load``, ``torch.export.load`` unpickle parts of the
file): open only files you made or trust.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from torch import nn

from cifar_edge.export.config import ExportFailedError
from cifar_edge.export.engines import Engine, OpenOptions, torch_device, torch_engine
from cifar_edge.export.formats import ArtifactFormat, WriteJob
from cifar_edge.export.formats.metadata import METADATA_KEYS, build_provenance, metadata_entries
from cifar_edge.export.formats.onnx import BATCH_AXIS_NAME, example_input, quiet_tools
from cifar_edge.runtime.common.command import first_line

TORCHSCRIPT_EXPORTER = "torch.jit.trace"
EXPORTED_PROGRAM_EXPORTER = "torch.export.export + torch.export.save"


def _extra_files(job: WriteJob, row: ArtifactFormat, exporter: str) -> dict[str, str]:
    provenance = build_provenance(
        job.run, artifact_format=row.format, precision=row.precision, exporter=exporter, tta=job.tta
    )
    return metadata_entries(job.run.contract, provenance)


def write_torchscript(job: WriteJob, row: ArtifactFormat, path: Path) -> None:
    extra_files = _extra_files(job, row, TORCHSCRIPT_EXPORTER)
    try:
        with quiet_tools(), torch.no_grad():
            # check_trace=False: the parity gate compares far more inputs against the eager module than the
            # tracer's own single re-run would.
            traced = torch.jit.trace(job.module, example_input(job.run.contract), check_trace=False)
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer, _extra_files=extra_files)
    except Exception as error:  # tracing raises many types; all mean "this model did not trace"
        raise ExportFailedError(f"TorchScript export failed: {type(error).__name__}: {first_line(error)}") from None
    # Written by us, not by torch: a full disk is then an OSError (a write failure), not an exporter failure.
    Path(path).write_bytes(buffer.getbuffer())


def write_program(job: WriteJob, row: ArtifactFormat, path: Path) -> None:
    extra_files = _extra_files(job, row, EXPORTED_PROGRAM_EXPORTER)
    batch = torch.export.Dim(BATCH_AXIS_NAME, min=1)
    try:
        with quiet_tools(), torch.no_grad():
            example = (example_input(job.run.contract),)
            program = torch.export.export(job.module, example, dynamic_shapes=({0: batch},))
            buffer = io.BytesIO()
            torch.export.save(program, buffer, extra_files=extra_files)
    except Exception as error:  # torch.export raises many types; all mean "this model did not export"
        message = f"exported-program export failed: {type(error).__name__}: {first_line(error)}"
        raise ExportFailedError(message) from None
    Path(path).write_bytes(buffer.getbuffer())


def load_torchscript(
    path: str | os.PathLike[str], keys: tuple[str, ...] = ()
) -> tuple[torch.jit.ScriptModule, dict[str, str]]:
    """Load a TorchScript file and the requested ``_extra_files`` entries (only files you made or trust)."""
    extra_files = dict.fromkeys(keys, "")
    with quiet_tools():
        module = torch.jit.load(os.fspath(path), map_location="cpu", _extra_files=extra_files)
    module.eval()
    return module, extra_files


def load_program(path: str | os.PathLike[str], keys: tuple[str, ...] = ()) -> tuple[nn.Module, dict[str, str]]:
    """Load a ``.pt2``; returns the callable module and the requested extra files (only files you made or trust)."""
    extra_files = dict.fromkeys(keys, "")
    with quiet_tools(), open(path, "rb") as handle:
        program = torch.export.load(handle, extra_files=extra_files)
    return program.module(), extra_files


def open_torchscript(path: Path, options: OpenOptions) -> Engine:
    device = torch_device(options.provider)
    module, extra_files = load_torchscript(path, METADATA_KEYS)
    return torch_engine(module.to(device), device, name="torch.jit", metadata=extra_files)


def open_program(path: Path, options: OpenOptions) -> Engine:
    device = torch_device(options.provider)
    module, extra_files = load_program(path, METADATA_KEYS)
    return torch_engine(module.to(device), device, name="torch.export", metadata=extra_files)
