"""Where artifacts go: one Target per artifact, decided from the options and the format table, checked writable
before any work, locked while written, parity reports kept in step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from cifar_edge.export.config import INT8_GELU, INT8_WEIGHT_BITS, MIN_OPSET, ExportConfig, ExportUsageError
from cifar_edge.export.formats import (
    DTYPES,
    FLOAT_INPUT,
    FORMATS,
    FP32,
    QUANTIZATIONS,
    ROWS,
    ArtifactFormat,
    find_row,
    format_of_folder,
    row_of,
)
from cifar_edge.export.formats.pixels import MIN_PIXEL_OPSET
from cifar_edge.runtime.common.atomic_io import atomic_write_bytes, check_writable, exclusive_lock
from cifar_edge.runtime.common.names import LOCK_SUFFIX, PARITY_SUFFIX, WEIGHTS_FILE
from cifar_edge.runtime.contract import INPUT_FORMS

if TYPE_CHECKING:
    from cifar_edge.train.run_folder import LoadedRun


@dataclass(frozen=True)
class Target:
    """One artifact to write: its format and precision (a row of the format table) and its final path."""

    format: str
    precision: str
    path: Path

    @property
    def row(self) -> ArtifactFormat:
        return row_of(self.format, self.precision)


def targets_for(config: ExportConfig, run_dir: Path) -> list[Target]:
    """Validate the option combination and decide each artifact's final path."""
    _check_options(config)
    precision = config.onnx_precision
    formats = list(dict.fromkeys(config.formats))
    output = Path(config.output) if config.output is not None else None
    if output is not None and len(formats) > 1 and output.suffix and not output.is_dir():
        raise ExportUsageError(f"--output {config.output}: several formats need a folder, not a file name")
    targets = []
    for name in formats:
        row = find_row(name, precision) or row_of(name)  # formats without that precision stay fp32
        if output is None:
            path = run_dir / row.file_name
        elif len(formats) > 1 or (output.is_dir() and not row.is_folder):
            path = output / row.file_name  # several artifacts: --output names their folder (one folder artifact: it)
        else:
            path = output
        if row.is_folder:
            _check_replaceable(row, path)
        targets.append(Target(row.format, row.precision, path))
    return targets


def _check_replaceable(row: ArtifactFormat, path: Path) -> None:
    """A folder artifact replaces the whole folder at ``path``: only when it is absent, empty, or one such artifact
    alone (a Triton repository of one model), never a folder with anything else in it."""
    if not path.exists() and not path.is_symlink():
        return
    entries = list(path.iterdir()) if path.is_dir() and not path.is_symlink() else None
    if entries is not None and (not entries or (len(entries) == 1 and format_of_folder(path) == row.format)):
        return
    raise ExportUsageError(
        f"{path}: exists and is not a {row.label} of one model; --format {row.format} replaces the whole folder, "
        "so name a new or empty folder with --output"
    )


def _check_options(config: ExportConfig) -> None:
    unknown = [name for name in config.formats if name not in FORMATS]
    if unknown or not config.formats:
        raise ExportUsageError(
            f"--format must be one of {', '.join(FORMATS)} or all, got {', '.join(unknown) or 'none'}"
        )
    if config.dtype not in DTYPES:
        raise ExportUsageError(f"--dtype must be one of {', '.join(DTYPES)}, got {config.dtype!r}")
    if config.quantize is not None and config.quantize not in QUANTIZATIONS:
        raise ExportUsageError(f"--quantize must be {' or '.join(QUANTIZATIONS)}, got {config.quantize!r}")
    if config.int8_weight_bits not in INT8_WEIGHT_BITS:
        raise ExportUsageError(f"--int8-weight-bits must be one of {', '.join(INT8_WEIGHT_BITS)}")
    if config.int8_gelu not in INT8_GELU:
        raise ExportUsageError(f"--int8-gelu must be one of {', '.join(INT8_GELU)}")
    if config.quantize and config.dtype != FP32:
        raise ExportUsageError("--quantize int8 starts from the fp32 model: do not combine it with --dtype fp16")
    if config.onnx_precision != FP32 and not any(find_row(name, config.onnx_precision) for name in config.formats):
        raise ExportUsageError(_no_row_for_precision())
    newest_opset = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= config.opset <= newest_opset:
        raise ExportUsageError(f"--opset must be between {MIN_OPSET} and {newest_opset}, got {config.opset}")
    if config.input_form not in INPUT_FORMS:
        raise ExportUsageError(f"--input must be one of {', '.join(INPUT_FORMS)}, got {config.input_form!r}")
    if writes_pixels(config) and config.opset < MIN_PIXEL_OPSET:
        raise ExportUsageError(
            f"--input {config.input_form} resizes in the graph with opset {MIN_PIXEL_OPSET}'s Resize: use --opset "
            f"{MIN_PIXEL_OPSET} or newer, or --input float"
        )
    for name, value in (("--verify-images", config.verify_images), ("--calibration", config.calibration_images)):
        if value < 0:
            raise ExportUsageError(f"{name} must be >= 0, got {value}")


def writes_pixels(config: ExportConfig) -> bool:
    """Whether some artifact ``config`` asks for takes pixels (an ONNX row, unless --input float)."""
    return any(row_of(name).input_form(config) != FLOAT_INPUT for name in config.formats if name in FORMATS)


def _no_row_for_precision() -> str:
    """The usage error for --dtype/--quantize without a format that has such a row (today: ONNX only)."""
    selectors = [f"--{field} {value}" for row in ROWS for field, value in row.selected_by]
    rows = [row for row in ROWS if row.selected_by]
    labels = "/".join(dict.fromkeys(row.label for row in rows))
    formats = " or ".join(dict.fromkeys(f"--format {row.format}" for row in rows))
    return f"{' and '.join(selectors)} apply to {labels} only: add {formats} (or all)"


def check_destinations(targets: list[Target], run: LoadedRun | None = None) -> None:
    """WriteError now, before any work, when an artifact or its parity report could not be written at the end.

    Each destination folder must take a new file with room for its artifacts (estimated as twice the run's weights
    plus 64 KiB each: the graph and metadata around the weights), and an existing artifact or parity report must not
    be immutable (the final rename over it would fail).
    """
    weights = _weights_size(run) if run is not None else 0
    by_folder: dict[Path, list[Target]] = {}
    for target in targets:
        by_folder.setdefault(target.path.parent, []).append(target)
    for folder, group in by_folder.items():
        files = [path for target in group for path in (target.path, parity_path_of(target.path))]
        check_writable(folder, files=files, needed_bytes=len(group) * (2 * weights + 64 * 1024))


def _weights_size(run: LoadedRun) -> int:
    try:
        return (run.run_dir / WEIGHTS_FILE).stat().st_size
    except OSError:
        return 0


def parity_path_of(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + PARITY_SUFFIX)


@contextlib.contextmanager
def artifact_locks(targets: list[Target]) -> Iterator[None]:
    """Hold ``<artifact>.lock`` of every target (in path order) until the body is done; LockedError (exit 5) at
    once when another export holds one: two exports never interleave an artifact and its parity report."""
    with contextlib.ExitStack() as stack:
        for path in sorted({target.path for target in targets}):
            stack.enter_context(exclusive_lock(path.with_name(path.name + LOCK_SUFFIX), path))
        yield


def read_if_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes() if path.is_file() else None
    except OSError:
        return None


def restore(path: Path, previous: bytes | None) -> None:
    """Put ``path`` back as it was (absent when ``previous`` is None), as far as the file system lets us."""
    with contextlib.suppress(OSError):
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write_bytes(path, previous)
