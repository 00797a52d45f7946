"""What ``cifar-eval`` does, as one library function: open the model, load the data, evaluate, write, report.

Exit codes (README.md, "Exit codes"): 0 evaluated; 1 evaluated, but some images could not be decoded (skipped,
listed in eval.json); 2 usage error, unusable model or data; 3 the requested provider is not available; 5 the
output folder cannot take eval.json and the plots.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console

from cifar_edge.export.evaluate.data import load_eval_data
from cifar_edge.export.evaluate.models import ModelLoadError, OpenedModel, open_model
from cifar_edge.runtime.common.atomic_io import WriteError, atomic_write_text, check_writable, write_error
from cifar_edge.runtime.common.command import ExitCode, first_line
from cifar_edge.runtime.common.names import CONFUSION_PNG, EVAL_JSON, EVAL_SUFFIX, MISCLASSIFIED_PNG
from cifar_edge.runtime.evaluate.core import evaluation_report, run_model
from cifar_edge.runtime.evaluate.labelled_folder import LabelledDataError, LabelledImages
from cifar_edge.runtime.providers.strict import ProviderUnavailableError

# cifar-eval's exit codes mean what cifar-infer's do (one definition: runtime/common/command.py).
_OUTPUT_HINT = "; choose another folder with --output-dir"


@dataclass(frozen=True)
class EvalOptions:
    # A run folder, checkpoint.pt, TorchScript file, .pt2 or ONNX file.
    model: str
    # "cifar10" (the official test split, via torchvision) or a labelled image folder.
    data: str
    # auto | cpu | cuda | tensorrt; explicit ones are strict (exit 3), as in cifar-infer.
    provider: str = "auto"
    # Images per model call (and per decoding round).
    batch_size: int = 256
    # Where eval.json and the plots go; None: "<model file name>.eval/" beside the model.
    output_dir: str | None = None
    # Evaluate a class-stratified subset of this many images (quick checks); None: all of them.
    limit: int | None = None
    # Where CIFAR-10 lives or is downloaded to (--data cifar10 only).
    data_root: str | None = None
    # Intra-op threads for onnxruntime or torch, one run at a time; None: the runtime's default (ONNX on the CPU:
    # one single-thread run per core at once; torch: all cores).
    threads: int | None = None
    # Image decoding threads; None: all usable cores.
    decode_workers: int | None = None
    # Print eval.json on stdout instead of the human summary.
    as_json: bool = False
    # No summary and no progress bar; errors still print.
    quiet: bool = False
    # Skip confusion.png and misclassified.png.
    plots: bool = True


def default_output_dir(opened: OpenedModel) -> Path:
    artifact = opened.artifact_file
    return artifact.with_name(artifact.name + EVAL_SUFFIX)


def run_eval(options: EvalOptions, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Evaluate as ``options`` say; returns the exit code. Errors are one line on stderr."""
    stdout = stdout or sys.stdout
    errors = Console(file=stderr or sys.stderr, highlight=False, markup=False, soft_wrap=True)
    notes = Console(file=stderr or sys.stderr, highlight=False, markup=False, soft_wrap=True, quiet=options.quiet)
    if options.batch_size < 1:
        errors.print(f"cifar-eval: error: --batch-size must be >= 1, got {options.batch_size}")
        return ExitCode.USAGE
    try:
        opened = open_model(options.model, options.provider, threads=options.threads, batch_size=options.batch_size)
    except ModelLoadError as error:
        errors.print(f"cifar-eval: error: {error}")
        return ExitCode.USAGE
    except ProviderUnavailableError as error:
        errors.print(f"cifar-eval: error: {error}")
        return ExitCode.PROVIDER_UNAVAILABLE
    try:
        return _evaluate_opened(opened, options, stdout, errors, notes)
    finally:
        opened.close()


def _evaluate_opened(opened: OpenedModel, options: EvalOptions, stdout: TextIO, errors: Console, notes: Console) -> int:
    from cifar_edge.export.evaluate.report import print_summary, progress_bar

    try:
        data = load_eval_data(
            options.data,
            opened.contract,
            data_root=options.data_root,
            limit=options.limit,
            decode_workers=options.decode_workers,
        )
    except LabelledDataError as error:
        errors.print(f"cifar-eval: error: {error}")
        return ExitCode.USAGE
    output_dir = Path(options.output_dir) if options.output_dir else default_output_dir(opened)
    try:  # before the model runs over the data: a folder that cannot take eval.json fails now, not at the end
        outputs = [output_dir / name for name in (EVAL_JSON, CONFUSION_PNG, MISCLASSIFIED_PNG)]
        check_writable(output_dir, files=outputs, create=False)
    except WriteError as error:
        errors.print(f"cifar-eval: error: {error}{_OUTPUT_HINT if not options.output_dir else ''}")
        return ExitCode.WRITE_FAILED
    notes.print(
        f"model: {opened.path} ({opened.info()['format']}, {opened.precision}, {opened.provider}"
        + (f"; {'; '.join(opened.notes)}" if opened.notes else "")
        + f"); data: {_describe_data(data)}"
    )
    show_bar = not (options.quiet or options.as_json) and errors.is_terminal
    with progress_bar(errors, len(data), enabled=show_bar) as advance:
        try:
            outputs = run_model(
                opened.engine.forward, data, opened.contract, batch_size=options.batch_size, on_progress=advance
            )
        except Exception as error:  # the model failed at run time (wrong output shape, provider error, ...)
            errors.print(f"cifar-eval: error: {opened.path}: the model failed on the data ({first_line(error)})")
            return ExitCode.USAGE
    for failure in outputs.failures:
        errors.print(f"skipped: {failure}")
    if not len(outputs.indices):
        errors.print(f"cifar-eval: error: none of the {len(data)} images could be decoded")
        return ExitCode.USAGE
    report = evaluation_report(outputs, data, opened.contract, model_info=opened.info(), batch_size=options.batch_size)
    try:
        report["files"] = _write_outputs(report, data, output_dir, options.plots)
    except OSError as error:  # the previous eval.json and plots are left as they were (atomic writes)
        errors.print(f"cifar-eval: error: {write_error(output_dir, error)}")
        return ExitCode.WRITE_FAILED
    if options.as_json:
        stdout.write(json.dumps(report, ensure_ascii=False, allow_nan=False) + "\n")
        stdout.flush()
    elif not options.quiet:
        print_summary(report, Console(file=stdout, highlight=False, soft_wrap=True))
    if report["files"].get("plots_skipped"):
        notes.print(f"plots skipped: {report['files']['plots_skipped']}")
    return ExitCode.FAILED if outputs.failures else ExitCode.OK


def _write_outputs(report: dict[str, Any], data: LabelledImages, output_dir: Path, plots: bool) -> dict[str, Any]:
    """Write the plots (when possible) and eval.json; returns the ``files`` section of the report."""
    from cifar_edge.export.evaluate.plots import plot_confusion, plot_misclassified, plotting_unavailable

    output_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {
        "output_dir": str(output_dir),
        "eval_json": str(output_dir / EVAL_JSON),
        "confusion_png": None,
        "misclassified_png": None,
        "plots_skipped": None,
    }
    reason = plotting_unavailable() if plots else "--no-plots"
    if reason is None:
        plot_confusion(report["confusion_matrix"]["counts"], report["class_names"], output_dir / CONFUSION_PNG)
        plot_misclassified(report["misclassified"], data.image, output_dir / MISCLASSIFIED_PNG)
        files["confusion_png"] = str(output_dir / CONFUSION_PNG)
        files["misclassified_png"] = str(output_dir / MISCLASSIFIED_PNG)
    else:
        files["plots_skipped"] = reason
    report["files"] = files
    atomic_write_text(output_dir / EVAL_JSON, json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return files


def _describe_data(data: LabelledImages) -> str:
    description = data.description
    where = description.get("class_folder") or description.get("split") or description.get("source")
    return f"{len(data)} images from {where}"
