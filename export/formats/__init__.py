"""The format table: every artifact ``cifar-export`` writes, one row per format x precision.

Like Ultralytics' ``export_formats()``, this one table drives everything that lists formats: cifar-export's
``--format`` / ``--dtype`` / ``--quantize`` choices and default file names, the writer each artifact goes through,
the opener that the parity gate, ``cifar-eval`` and ``cifar-bench`` run it with, and cifar-bench's rows. Adding a
format is one module in this folder (a writer and an opener) plus one row in ``ROWS``.

Writers, openers and checkers are named ``"module:function"`` and imported on first use, so reading the table (the
commands' ``--help`` and option checks) loads neither torch nor onnx, and opening an ONNX row loads neither either.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from cifar_edge.export.engines import Engine, OpenOptions
from cifar_edge.runtime.common.names import MODEL_ONNX

if TYPE_CHECKING:
    import onnx
    from torch import nn

    from cifar_edge.export.config import ExportConfig
    from cifar_edge.runtime.labelled import ArrayImages
    from cifar_edge.train.run_folder import LoadedRun

ONNX = "onnx"
TORCHSCRIPT = "torchscript"
EXPORTED_PROGRAM = "exportedprogram"
TRITON = "triton"
# What ``--format all`` (cifar-export) stands for: every format of the table.
ALL_FORMATS = "all"
# The precision every format has; the others are asked for with the option in ``ArtifactFormat.selected_by``.
FP32 = "fp32"
# --input (ExportConfig.input_form, runtime/contract.py INPUT_FORMS): the rows that accept it (ONNX) write the
# pixel form unless it says float; the others always take FLOAT_INPUT.
INPUT_OPTION = "--input"
FLOAT_INPUT = "float"


@dataclass
class WriteJob:
    """What a writer gets, besides its row and the path to write: one artifact's source and settings."""

    run: LoadedRun  # the run folder the artifact comes from (its provenance)
    module: nn.Module  # the eval-mode module to export (the folded inference form, TTA wrapper included)
    config: ExportConfig
    tta: str  # the TTA baked into ``module``, recorded in the provenance
    calibration: ArrayImages | None  # real images for int8 calibration (None when no row needs them)
    fp32_graph: Callable[[], onnx.ModelProto]  # the fp32 ONNX graph of ``module``, exported once per run


class Writer(Protocol):
    def __call__(self, job: WriteJob, row: ArtifactFormat, path: Path) -> None: ...


class Opener(Protocol):
    def __call__(self, path: Path, options: OpenOptions) -> Engine: ...


class Checker(Protocol):
    def __call__(self, path: Path) -> None: ...


@dataclass(frozen=True)
class ArtifactFormat:
    """One row of the table: a format at one precision, and everything that knows it."""

    format: str  # what cifar-export's --format takes
    precision: str
    file_name: str  # cifar-export's default file name, in the run folder
    label: str  # how reports name the format (cifar-eval's "format", cifar-bench's "format" column)
    bench_key: str  # what cifar-bench's --formats takes for this row
    writer: str  # "module:function", a Writer
    opener: str  # "module:function", an Opener: the file as an Engine, with the metadata it carries
    needs_torch: bool  # opening and running it needs torch (the ONNX rows run on the torch-free runtime)
    # cifar-export options that apply to this row (others are ignored for it).
    options: tuple[str, ...] = ("--tta",)
    # The ExportConfig fields (with their values) that ask for this precision; () for fp32, the default.
    selected_by: tuple[tuple[str, str], ...] = ()
    # Where the parity gate runs it: the first provider always, the others where they are really active.
    gate_providers: tuple[str, ...] = ("cpu",)
    # "module:function" the gate runs on the file before a runtime is trusted with it (None: the opener checks).
    checker: str | None = None
    # Names inside a zip archive that make it this format (files whose suffix other kinds share, such as ".pt").
    zip_markers: tuple[str, ...] = ()
    # A folder artifact (a Triton repository): "module:function" giving the model file inside such a folder (raising
    # ValueError when the folder is not one); None for a file artifact.
    locator: str | None = None

    @property
    def suffix(self) -> str:
        return "" if self.is_folder else Path(self.file_name).suffix

    @property
    def is_folder(self) -> bool:
        return self.locator is not None

    def model_file(self, path: Path) -> Path:
        """The file inside the artifact at ``path`` that holds the model (the artifact itself for a file row)."""
        return cast(Callable[[Path], Path], _resolve(self.locator))(path) if self.locator else path

    def write(self, job: WriteJob, path: Path) -> None:
        cast(Writer, _resolve(self.writer))(job, self, path)

    def check(self, path: Path) -> None:
        """The row's file check (ExportFailedError when the file does not validate); nothing when it has none."""
        if self.checker is not None:
            cast(Checker, _resolve(self.checker))(path)

    def input_form(self, config: ExportConfig) -> str:
        """What this row's file takes under ``config``: its --input where the row accepts the option, else float."""
        return config.input_form if INPUT_OPTION in self.options else FLOAT_INPUT

    def open(self, path: str | Path, options: OpenOptions | None = None) -> Engine:
        """The artifact at ``path`` as an Engine; ProviderUnavailableError when ``options.provider`` is not active."""
        return cast(Opener, _resolve(self.opener))(Path(path), options or OpenOptions())


_ONNX_OPTIONS = ("--opset", "--tta", INPUT_OPTION)
_INT8_OPTIONS = (*_ONNX_OPTIONS, "--quantize", "--calibration", "--int8-weight-bits", "--int8-gelu")


def _onnx_row(precision: str, file_name: str, writer: str, options: tuple[str, ...]) -> ArtifactFormat:
    """An ONNX row: run by the torch-free runtime, checked by onnx.checker first, gated on the CPU and on CUDA where
    it is active; a precision other than fp32 is asked for with the option that names it (--dtype, --quantize)."""
    selector = next((option for option in ("--dtype", "--quantize") if option in options), None)
    return ArtifactFormat(
        format=ONNX,
        precision=precision,
        file_name=file_name,
        label="ONNX",
        bench_key=f"{ONNX}-{precision}",
        writer=writer,
        opener="cifar_edge.export.engines:open_onnx",
        needs_torch=False,
        options=options,
        selected_by=((selector.removeprefix("--"), precision),) if selector else (),
        gate_providers=("cpu", "cuda"),
        checker="cifar_edge.export.formats.onnx:validate_onnx_file",
    )


_TORCH_FILES = "cifar_edge.export.formats.torch_files"


def _torch_row(
    artifact_format: str, file_name: str, label: str, writer_opener: tuple[str, str], zip_markers: tuple[str, ...] = ()
) -> ArtifactFormat:
    """A torch row (fp32 only): opened and run by torch, gated on the CPU; its cifar-bench key is its format."""
    writer, opener = writer_opener
    return ArtifactFormat(
        format=artifact_format,
        precision=FP32,
        file_name=file_name,
        label=label,
        bench_key=artifact_format,
        writer=writer,
        opener=opener,
        needs_torch=True,
        zip_markers=zip_markers,
    )


# A Triton model repository around the fp32 ONNX file (docs/serving.md): the ONNX options, the same gate.
_TRITON_ROW = ArtifactFormat(
    format=TRITON,
    precision=FP32,
    file_name=TRITON,
    label="Triton repository",
    bench_key=TRITON,
    writer="cifar_edge.export.formats.triton:write_triton",
    opener="cifar_edge.export.formats.triton:open_triton",
    needs_torch=False,
    options=_ONNX_OPTIONS,
    gate_providers=("cpu", "cuda"),
    checker="cifar_edge.export.formats.triton:check_triton",
    locator="cifar_edge.runtime.serve.repository:find_model_file",
)

ROWS: tuple[ArtifactFormat, ...] = (
    _onnx_row(FP32, MODEL_ONNX, "cifar_edge.export.formats.onnx:write_fp32", _ONNX_OPTIONS),
    _onnx_row("fp16", "model.fp16.onnx", "cifar_edge.export.formats.onnx:write_fp16", (*_ONNX_OPTIONS, "--dtype")),
    _onnx_row("int8", "model.int8.onnx", "cifar_edge.export.formats.quantize:write_int8", _INT8_OPTIONS),
    _torch_row(
        TORCHSCRIPT,
        "model.torchscript.pt",
        "TorchScript",
        (f"{_TORCH_FILES}:write_torchscript", f"{_TORCH_FILES}:open_torchscript"),
        zip_markers=("constants.pkl", "/code/"),
    ),
    _torch_row(
        EXPORTED_PROGRAM, "model.pt2", "torch.export", (f"{_TORCH_FILES}:write_program", f"{_TORCH_FILES}:open_program")
    ),
    _TRITON_ROW,
)

# cifar-export's formats, in table order (what --format takes, and the order of --format all).
FORMATS: tuple[str, ...] = tuple(dict.fromkeys(row.format for row in ROWS))


def _selectable(field: str) -> tuple[str, ...]:
    return tuple(value for row in ROWS for name, value in row.selected_by if name == field)


# What --dtype takes (fp32 and the precisions it selects) and what --quantize takes.
DTYPES: tuple[str, ...] = (FP32, *_selectable("dtype"))
QUANTIZATIONS: tuple[str, ...] = _selectable("quantize")


def find_row(artifact_format: str, precision: str = FP32) -> ArtifactFormat | None:
    return next((row for row in ROWS if (row.format, row.precision) == (artifact_format, precision)), None)


def row_of(artifact_format: str, precision: str = FP32) -> ArtifactFormat:
    """The row of ``artifact_format`` at ``precision``; KeyError when the table has none."""
    row = find_row(artifact_format, precision)
    if row is None:
        raise KeyError(f"no {artifact_format} {precision} row in the format table")
    return row


def labels_accepting(option: str) -> tuple[str, ...]:
    """The labels of the formats some row of which accepts ``option`` (for help texts and error messages)."""
    return tuple(dict.fromkeys(row.label for row in ROWS if option in row.options))


def format_of_suffix(suffix: str) -> str | None:
    """The format whose files alone end in ``suffix`` (".onnx", ".pt2"); None for suffixes other kinds share."""
    found = {row.format for row in ROWS if row.suffix == suffix.lower() and not row.zip_markers}
    return found.pop() if len(found) == 1 else None


def format_of_zip(names: list[str]) -> str | None:
    """The format whose markers appear among a zip archive's member ``names``; None when no format's do."""
    for row in ROWS:
        if any(marker in name for marker in row.zip_markers for name in names):
            return row.format
    return None


def format_of_folder(path: Path) -> str | None:
    """The folder format (a Triton repository) ``path`` is, by its row's locator; None when it is none of them."""
    for row in ROWS:
        if row.is_folder:
            try:
                if row.model_file(path).is_file():
                    return row.format
            except (OSError, ValueError):
                continue
    return None


def _resolve(reference: str) -> object:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)
