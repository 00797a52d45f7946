"""What ``cifar-eval`` does, as one library function: open the model, load the data, evaluate, write, report (a
progress bar with images/s on stderr, a summary of eval.json on stdout).

Exit codes (README.md, "Exit codes"): 0 evaluated; 1 evaluated, but some images could not be decoded (skipped,
listed in eval.json); 2 usage error, unusable model or data; 3 the requested provider is not available; 5 the
output folder cannot take eval.json and the plots.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from cifar_edge.export.evaluate.data import load_eval_data
from cifar_edge.export.models import ModelLoadError, OpenedModel, open_model
from cifar_edge.runtime.common.atomic_io import WriteError, atomic_write_text, check_writable, write_error
from cifar_edge.runtime.common.command import ExitCode, first_line
from cifar_edge.runtime.common.names import CONFUSION_PNG, EVAL_JSON, EVAL_SUFFIX, MISCLASSIFIED_PNG
from cifar_edge.runtime.evaluation import evaluation_report, score_images
from cifar_edge.runtime.labelled import LabelledDataError, LabelledImages
from cifar_edge.runtime.session import ProviderUnavailableError

# cifar-eval's exit codes mean what cifar-infer's do (one definition: runtime/common/command.py).
_OUTPUT_HINT = "; choose another folder with --output-dir"
# Console lines: the most confused pairs shown (eval.json lists more).
PAIRS_SHOWN = 5


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
    except (ModelLoadError, ProviderUnavailableError) as error:
        errors.print(f"cifar-eval: error: {error}")
        return error.exit_code
    try:
        return _evaluate_opened(opened, options, stdout, errors, notes)
    finally:
        opened.close()


def _evaluate_opened(opened: OpenedModel, options: EvalOptions, stdout: TextIO, errors: Console, notes: Console) -> int:
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
            outputs = score_images(
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


@contextlib.contextmanager
def progress_bar(console: Console, total: int, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a bar with images/s and ETA on ``console`` while enabled."""
    if not enabled or total < 1:
        yield lambda _count: None
        return
    with Progress(
        TextColumn("evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} img/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("evaluate", total=total, rate="-")

        def advance(count: int) -> None:
            bar.advance(task, count)
            elapsed = bar.tasks[0].elapsed or 0.0
            if elapsed > 0:
                bar.update(task, rate=f"{bar.tasks[0].completed / elapsed:,.0f}")

        yield advance


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f}%"


def print_summary(report: dict[str, Any], console: Console) -> None:
    model, timing = report["model"], report["timing"]
    console.print(
        f"[bold]{escape(str(model.get('format')))}[/] {model.get('precision')} on {model.get('provider')}: "
        f"{report['images']} images evaluated"
        + (f", {report['images_skipped']} skipped" if report["images_skipped"] else "")
        + f" in {timing['seconds']:.2f} s ({timing['images_per_second']:,.0f} img/s)"
    )
    console.print(f"forward passes per image: {model.get('passes', 'unknown')}", markup=False)
    console.print(
        f"top-1 accuracy [bold]{percent(report['top1_accuracy'])}[/]   "
        f"top-{report['top5_k']} accuracy {percent(report['top5_accuracy'])}   "
        f"mean class accuracy {percent(report['mean_class_accuracy'])}"
    )
    classes = Table(title="per-class accuracy", show_edge=False, header_style="bold", title_justify="left")
    classes.add_column("class")
    classes.add_column("images", justify="right")
    classes.add_column("correct", justify="right")
    classes.add_column("accuracy", justify="right")
    for row in report["per_class"]:
        classes.add_row(escape(row["class"]), str(row["images"]), str(row["correct"]), percent(row["accuracy"]))
    console.print(classes)
    pairs = report["most_confused"][:PAIRS_SHOWN]
    if pairs:
        confused = Table(title="most confused (true -> predicted)", show_edge=False, header_style="bold")
        confused.title_justify = "left"
        confused.add_column("true")
        confused.add_column("predicted")
        confused.add_column("images", justify="right")
        confused.add_column("of true class", justify="right")
        for pair in pairs:
            share = percent(pair["share_of_true_class"])
            confused.add_row(escape(pair["true"]), escape(pair["predicted"]), str(pair["count"]), share)
        console.print(confused)
    else:
        console.print("no confusions: every image was classified correctly")
    files = report.get("files") or {}
    written = [files.get(key) for key in ("eval_json", "confusion_png", "misclassified_png") if files.get(key)]
    if written:
        console.print("wrote " + ", ".join(written), markup=False)
