"""``cifar-export``: parse options, call ``export_run``, print the result. Exit codes in README.md."""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cifar_edge.export.config import DEFAULT_OPSET, ExportConfig, ExportError, Thresholds
from cifar_edge.export.formats import (
    ALL_FORMATS,
    DTYPES,
    FORMATS,
    INPUT_OPTION,
    QUANTIZATIONS,
    ROWS,
    labels_accepting,
    row_of,
)
from cifar_edge.runtime.common.atomic_io import WriteError
from cifar_edge.runtime.common.command import ExitCode, describe_exit_codes, first_line, missing_extra, run_command
from cifar_edge.runtime.contract import INPUT_FORMS

DEFAULTS = ExportConfig()
# Set to re-raise unexpected exceptions with their traceback instead of the one-line error.
DEBUG_ENV = "CIFAR_EDGE_DEBUG"
LIMITS = Thresholds()


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """An option's choices for typer, from the format table."""
    return Enum(name, [(value, value) for value in values], type=str)  # type: ignore[return-value]


FormatChoice = _choices("FormatChoice", (*FORMATS, ALL_FORMATS))
DtypeChoice = _choices("DtypeChoice", DTYPES)
QuantizeChoice = _choices("QuantizeChoice", QUANTIZATIONS)
InputChoice = _choices("InputChoice", INPUT_FORMS)


class TtaChoice(str, Enum):
    none = "none"
    flip = "flip"
    flip_shift = "flip_shift"


RunDir = Annotated[
    Path | None,
    typer.Argument(metavar="RUN_DIR", help="Run folder (model.safetensors + run.json); default runs/latest."),
]
Format = Annotated[FormatChoice, typer.Option("--format", "-f", help="Artifact format.")]
Dtype = Annotated[
    DtypeChoice,
    typer.Option("--dtype", help=f"{'/'.join(labels_accepting('--dtype'))}: fp16 weights/compute, fp32 I/O."),
]
Quantize = Annotated[
    QuantizeChoice | None,
    typer.Option("--quantize", help=f"{'/'.join(labels_accepting('--quantize'))}: static QDQ int8."),
]
Calibration = Annotated[int, typer.Option("--calibration", help="Images for int8 calibration.")]
Int8WeightBits = Annotated[
    str,
    typer.Option(
        "--int8-weight-bits",
        help="int8 weights: auto (7 bits where this CPU has no VNNI/AMX, else 8), or 7 / 8 for another target CPU.",
    ),
]
Int8Gelu = Annotated[
    str,
    typer.Option(
        "--int8-gelu",
        help="int8 GELU: sigmoid (x * sigmoid(1.702 x) on onnxruntime's int8 contrib kernels) or float (exact, "
        "standard ONNX ops, for other runtimes).",
    ),
]
InputForm = Annotated[
    InputChoice | None,
    typer.Option(
        INPUT_OPTION,
        help=f"{'/'.join(labels_accepting(INPUT_OPTION))} input: pixels (uint8 [N, H, W, 3] RGB of any size; resize, "
        "normalisation and softmax inside the model) or float (float32 NCHW, resized and normalised by the caller). "
        f"(default: {DEFAULTS.input_form}; other formats take float)",
    ),
]
Opset = Annotated[int, typer.Option("--opset", help="ONNX opset version.")]
Tta = Annotated[
    TtaChoice | None,
    typer.Option(
        "--tta",
        help="Test-time augmentation baked into the graph: none (1 pass), flip (2) or flip_shift (6). "
        "(default: the run's recipe's; the default recipe's is none)",
    ),
]
Output = Annotated[Path | None, typer.Option("--output", "-o", help="File (one artifact) or folder (several).")]
Verify = Annotated[bool, typer.Option("--verify/--no-verify", help="Run the parity gate before writing.")]
VerifyImages = Annotated[int, typer.Option("--verify-images", help="Real images in the gate.")]
Data = Annotated[Path | None, typer.Option("--data", help="Labelled ImageFolder instead of the run's own data.")]
PreprocessCheck = Annotated[
    list[Path],
    typer.Option(
        "--preprocess-check", metavar="FILE", help="Extra image file for the preprocessing-parity check (repeatable)."
    ),
]
MaxAbsDiff = Annotated[float, typer.Option(help="fp32 gate: max |logit diff|.")]
MinAgreement = Annotated[float, typer.Option(help="fp32 gate: top-1 agreement (0-1).")]
Fp16MinAgreement = Annotated[float, typer.Option(help="fp16 gate: top-1 agreement (0-1).")]
Int8MaxAccuracyDrop = Annotated[float, typer.Option(help="int8 gate: accuracy drop, percentage points.")]
Seed = Annotated[int, typer.Option(help="Seed for image sampling and probes.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object (the full result) on stdout.")]

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command(
    help=f"Export a cifar-train run to {' / '.join(dict.fromkeys(row.label for row in ROWS))}, proving parity with "
    "the PyTorch model.",
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
    run_dir: RunDir = None,
    output_format: Format = FormatChoice(DEFAULTS.formats[0]),
    dtype: Dtype = DtypeChoice(DEFAULTS.dtype),
    quantize: Quantize = None,
    calibration: Calibration = DEFAULTS.calibration_images,
    int8_weight_bits: Int8WeightBits = DEFAULTS.int8_weight_bits,
    int8_gelu: Int8Gelu = DEFAULTS.int8_gelu,
    input_form: InputForm = None,
    opset: Opset = DEFAULT_OPSET,
    tta: Tta = None,
    output: Output = None,
    verify: Verify = True,
    verify_images: VerifyImages = DEFAULTS.verify_images,
    data: Data = None,
    preprocess_check: PreprocessCheck = [],  # typer's default, never mutated  # noqa: B006
    max_abs_diff: MaxAbsDiff = LIMITS.fp32_max_abs_diff,
    min_agreement: MinAgreement = LIMITS.fp32_min_agreement,
    fp16_min_agreement: Fp16MinAgreement = LIMITS.fp16_min_agreement,
    int8_max_accuracy_drop: Int8MaxAccuracyDrop = LIMITS.int8_max_accuracy_drop_pp,
    seed: Seed = DEFAULTS.seed,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    formats = FORMATS if output_format.value == ALL_FORMATS else (output_format.value,)
    if input_form is not None and output_format.value != ALL_FORMATS:
        _check_input_option(formats[0], input_form.value, as_json)
    config = ExportConfig(
        formats=tuple(formats),
        dtype=dtype.value,
        quantize=quantize.value if quantize else None,
        output=output,
        opset=opset,
        input_form=input_form.value if input_form else DEFAULTS.input_form,
        tta=tta.value if tta else None,
        verify=verify,
        verify_images=verify_images,
        calibration_images=calibration,
        int8_weight_bits=int8_weight_bits,
        int8_gelu=int8_gelu,
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
    raise typer.Exit(_run(run_dir, config, quiet=quiet, as_json=as_json))


def _run(run_dir: Path | None, config: ExportConfig, *, quiet: bool, as_json: bool) -> int:
    """Export the run, print the result (or its JSON) and why any artifact was not written; the exit code."""
    from cifar_edge.export.pipeline import export_run  # heavy imports (torch, onnx) after option parsing
    from cifar_edge.export.results import ExportProgress, print_result
    from cifar_edge.export.run_data import resolve_run_dir

    errors = Console(stderr=True, highlight=False, soft_wrap=True)
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
    return result.exit_code


def _check_input_option(artifact_format: str, input_form: str, as_json: bool) -> None:
    """An explicit ``--input pixels`` for a format whose files take float input only is a usage error (exit 2)."""
    row = row_of(artifact_format)
    if row.input_form(ExportConfig(input_form=input_form)) != input_form:
        accepting = "/".join(labels_accepting(INPUT_OPTION))
        message = (
            f"--input {input_form} applies to {accepting} only: {row.label} files take float32 NCHW input "
            "(leave --input out)"
        )
        _fail(Console(stderr=True, highlight=False, soft_wrap=True), message, ExitCode.USAGE, as_json)


def _fail(errors: Console, message: str, exit_code: int, as_json: bool) -> None:
    errors.print(f"cifar-export: error: {message}", markup=False)
    if as_json:
        print(json.dumps({"ok": False, "exit_code": exit_code, "error": message}, allow_nan=False))
    raise typer.Exit(exit_code)


def main() -> None:
    run_command(app, "cifar-export: interrupted; nothing was written under a final name", command="cifar-export")


if __name__ == "__main__":
    main()
