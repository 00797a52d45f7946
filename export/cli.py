"""``cifar-export``: parse options, call ``export_run``, print the result. Exit codes in README.md."""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from cifar_edge.export.config import ALL_FORMATS, DEFAULT_OPSET, FORMATS, ExportConfig, Thresholds
from cifar_edge.export.errors import ExportError
from cifar_edge.runtime.atomic_io import WriteError
from cifar_edge.runtime.entry import run_command
from cifar_edge.runtime.errors import ExitCode, describe_exit_codes, first_line
from cifar_edge.runtime.extras import missing_extra

DEFAULTS = ExportConfig()
# Set to re-raise unexpected exceptions with their traceback instead of the one-line error.
DEBUG_ENV = "CIFAR_EDGE_DEBUG"
LIMITS = Thresholds()


class FormatChoice(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"
    exportedprogram = "exportedprogram"
    all = ALL_FORMATS


class DtypeChoice(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"


class QuantizeChoice(str, Enum):
    int8 = "int8"


class TtaChoice(str, Enum):
    none = "none"
    flip = "flip"
    flip_shift = "flip_shift"


app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command(
    help="Export a cifar-train run to ONNX / TorchScript / torch.export, proving parity with the PyTorch model.",
    epilog=describe_exit_codes(
        {
            ExitCode.OK: "ok",
            ExitCode.FAILED: "parity gate failed (nothing written under the final name)",
            ExitCode.USAGE: "usage error or unusable run folder",
            ExitCode.TOOL_FAILED: "the exporter, converter or quantizer failed",
            ExitCode.WRITE_FAILED: "the destination cannot be written (read-only, full, or another export holds its "
            "lock); checked before exporting, the previous artifact is kept",
            ExitCode.INTERRUPTED: "interrupted (nothing written under a final name)",
        }
    ),
)
def export(
    run_dir: Path | None = typer.Argument(
        None, metavar="RUN_DIR", help="Run folder (model.safetensors + run.json); default runs/latest."
    ),
    output_format: FormatChoice = typer.Option(FormatChoice.onnx, "--format", "-f", help="Artifact format."),
    dtype: DtypeChoice = typer.Option(DtypeChoice.fp32, "--dtype", help="ONNX: fp16 weights/compute, fp32 I/O."),
    quantize: QuantizeChoice | None = typer.Option(None, "--quantize", help="ONNX: static QDQ int8."),
    calibration: int = typer.Option(DEFAULTS.calibration_images, "--calibration", help="Images for int8 calibration."),
    int8_weight_bits: str = typer.Option(
        DEFAULTS.int8_weight_bits,
        "--int8-weight-bits",
        help="int8 weights: auto (7 bits where this CPU has no VNNI/AMX, else 8), or 7 / 8 for another target CPU.",
    ),
    opset: int = typer.Option(DEFAULT_OPSET, "--opset", help="ONNX opset version."),
    tta: TtaChoice | None = typer.Option(
        None,
        "--tta",
        help="Test-time augmentation baked into the graph: none (1 pass), flip (2) or flip_shift (6). "
        "(default: the run's, as trained and scored)",
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="File (one artifact) or folder (several)."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Run the parity gate before writing."),
    verify_images: int = typer.Option(DEFAULTS.verify_images, "--verify-images", help="Real images in the gate."),
    data: Path | None = typer.Option(None, "--data", help="Labelled ImageFolder instead of the run's own data."),
    preprocess_check: list[Path] = typer.Option(
        [],
        "--preprocess-check",
        metavar="FILE",
        help="Extra image file for the preprocessing-parity check (repeatable).",
    ),
    max_abs_diff: float = typer.Option(LIMITS.fp32_max_abs_diff, help="fp32 gate: max |logit diff|."),
    min_agreement: float = typer.Option(LIMITS.fp32_min_agreement, help="fp32 gate: top-1 agreement (0-1)."),
    fp16_min_agreement: float = typer.Option(LIMITS.fp16_min_agreement, help="fp16 gate: top-1 agreement (0-1)."),
    int8_max_accuracy_drop: float = typer.Option(
        LIMITS.int8_max_accuracy_drop_pp, help="int8 gate: accuracy drop, percentage points."
    ),
    seed: int = typer.Option(DEFAULTS.seed, help="Seed for image sampling and probes."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print errors only."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (the full result) on stdout."),
) -> None:
    from cifar_edge.export.pipeline import export_run  # heavy imports (torch, onnx) after option parsing
    from cifar_edge.export.progress import ExportProgress
    from cifar_edge.export.report import print_result
    from cifar_edge.export.run_select import resolve_run_dir

    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    formats = FORMATS if output_format is FormatChoice.all else (output_format.value,)
    config = ExportConfig(
        formats=tuple(formats),
        dtype=dtype.value,
        quantize=quantize.value if quantize else None,
        output=output,
        opset=opset,
        tta=tta.value if tta else None,
        verify=verify,
        verify_images=verify_images,
        calibration_images=calibration,
        int8_weight_bits=int8_weight_bits,
        data=data,
        preprocess_files=tuple(preprocess_check),
        thresholds=Thresholds(
            fp32_max_abs_diff=max_abs_diff,
            fp32_min_agreement=min_agreement,
            fp16_min_agreement=fp16_min_agreement,
            int8_max_accuracy_drop_pp=int8_max_accuracy_drop,
        ),
        seed=seed,
    )
    try:
        resolved = resolve_run_dir(run_dir)
        with ExportProgress(enabled=not (quiet or as_json), console=errors) as progress:
            result = export_run(resolved, config, progress)
    except ExportError as error:
        _fail(errors, str(error), error.exit_code, as_json)
    except WriteError as error:
        _fail(errors, str(error), ExitCode.WRITE_FAILED, as_json)
    except Exception as error:  # a bug, not a user error: still one line, with a way to get the traceback
        extra = missing_extra(error)
        if extra is not None:  # e.g. onnxscript, imported by torch.onnx only when it exports
            _fail(errors, *extra, as_json)
        if os.environ.get(DEBUG_ENV):
            raise
        message = f"internal error: {type(error).__name__}: {first_line(error)} (set {DEBUG_ENV}=1 for the traceback)"
        _fail(errors, message, ExitCode.TOOL_FAILED, as_json)
    if as_json:
        print(json.dumps(result.to_dict(), indent=None, sort_keys=True, allow_nan=False))
    elif not quiet:
        print_result(result, Console(highlight=False, soft_wrap=True))
    for artifact in result.artifacts:
        if artifact.error:
            errors.print(f"cifar-export: error: {artifact.error}", markup=False)
        elif not artifact.written and artifact.report is not None:
            failures = "; ".join(artifact.report.failures())
            errors.print(
                f"cifar-export: {artifact.path.name} failed the parity gate, not written: {failures}", markup=False
            )
    raise typer.Exit(result.exit_code)


def _fail(errors: Console, message: str, exit_code: int, as_json: bool) -> None:
    errors.print(f"cifar-export: error: {message}", markup=False)
    if as_json:
        print(json.dumps({"ok": False, "exit_code": exit_code, "error": message}, allow_nan=False))
    raise typer.Exit(exit_code)


def main() -> None:
    run_command(app, "cifar-export: interrupted; nothing was written under a final name", command="cifar-export")


if __name__ == "__main__":
    main()
