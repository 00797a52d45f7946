"""What ``cifar-infer`` does, as one library function (resolve the model, open it strictly, classify, report), and
how it shows results: a rich table (default) or JSON lines on stdout; failures, notes and progress on stderr.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from PIL import Image
from rich.console import Console

from cifar_edge.runtime.classifier import DEFAULT_BATCH_SIZE, DEFAULT_TOP_K, Classifier
from cifar_edge.runtime.common.command import ExitCode
from cifar_edge.runtime.common.names import RUNS_DIR
from cifar_edge.runtime.hardware import int8_warning
from cifar_edge.runtime.image_files import expand_inputs
from cifar_edge.runtime.model_file import ModelError, resolve_model_path
from cifar_edge.runtime.predictions import Failure, Prediction
from cifar_edge.runtime.session import ProviderUnavailableError


@dataclass(frozen=True)
class InferOptions:
    # Image files, folders (recursive), glob patterns, or "-" to read one of those per line from stdin.
    inputs: tuple[str, ...] = ()
    # Model file; None: $CIFAR_EDGE_MODEL, then runs/latest/model.onnx under the current directory.
    model: str | None = None
    # auto | cpu | cuda | tensorrt. auto: CUDA if it really loads, else CPU. The others are strict (exit 3).
    provider: str = "auto"
    # How many of the most probable classes each result lists (1 .. number of classes).
    top_k: int = DEFAULT_TOP_K
    # Images per session run.
    batch_size: int = DEFAULT_BATCH_SIZE
    # One JSON object per line on stdout instead of a table.
    as_json: bool = False
    # No notes on stderr (which model, provider, timing); failures are still reported.
    quiet: bool = False
    # onnxruntime intra-op threads per session run; None: 1 per stream on the CPU, every usable core on a GPU.
    intra_op_threads: int | None = None
    # Session runs at once, each on its own share of a batch; None: one per usable core on the CPU (when
    # intra_op_threads is not given), 1 on a GPU.
    streams: int | None = None
    # Image decoding threads; None: all usable cores.
    decode_workers: int | None = None
    # Decompression-bomb limit in pixels; None: Pillow's Image.MAX_IMAGE_PIXELS (89,478,485).
    max_pixels: int | None = None
    # Where the latest run is looked up (relative to the current directory).
    runs_dir: str = RUNS_DIR


def run_infer(
    options: InferOptions,
    stdin: TextIO | BinaryIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Classify ``options.inputs``; returns the exit code (an ExitCode)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    printer = ResultPrinter(stdout, stderr, as_json=options.as_json, quiet=options.quiet, top_k=options.top_k)
    if not options.inputs:
        stderr.write("error: no inputs: pass image files, folders, glob patterns, or - to read paths from stdin\n")
        return ExitCode.USAGE
    try:
        resolved = resolve_model_path(options.model, options.runs_dir)
        classifier = Classifier(
            resolved.path,
            options.provider,
            batch_size=options.batch_size,
            intra_op_threads=options.intra_op_threads,
            streams=options.streams,
            decode_workers=options.decode_workers,
            max_pixels=options.max_pixels,
        )
    except (ModelError, ProviderUnavailableError) as error:
        stderr.write(f"error: {error}\n")
        return error.exit_code
    _describe_model(printer, classifier, f"{resolved.path} (from {resolved.origin}")
    items = list(expand_inputs(options.inputs, stdin, warn=printer.warning))
    started = time.perf_counter()
    saved_pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        if options.max_pixels and saved_pillow_limit is not None and options.max_pixels > saved_pillow_limit:
            Image.MAX_IMAGE_PIXELS = options.max_pixels  # the user raised the limit for this run
        results = classifier.predict_iter(items, top_k=options.top_k, batch_size=options.batch_size)
        for result in printer.progress(results, total=len(items)):
            printer.add(result)
    except ModelError as error:  # the model failed at run time (e.g. its output does not match the contract)
        stderr.write(f"error: {error}\n")
        return ExitCode.USAGE
    finally:
        Image.MAX_IMAGE_PIXELS = saved_pillow_limit
        classifier.close()
    seconds = time.perf_counter() - started
    printer.finish()
    rate = printer.classified / seconds if seconds > 0 else 0.0
    printer.note(
        f"classified {printer.classified} of {printer.classified + printer.failed} inputs in {seconds:.2f} s "
        f"({rate:,.0f} img/s)" + (f"; {printer.failed} failed" if printer.failed else "")
    )
    return ExitCode.FAILED if printer.failed else ExitCode.OK


def _describe_model(printer: ResultPrinter, classifier: Classifier, where: str) -> None:
    """The model, provider and any int8 warning, as notes on stderr (silent with --quiet)."""
    contract = classifier.contract
    printer.note(
        f"model: {where}; {contract.num_classes} classes, "
        f"{contract.image_size[0]}x{contract.image_size[1]}, sha256 {classifier.sha256[:12]})"
    )
    printer.note(f"input: {classifier.model_input.describe()}")
    threads = classifier.intra_op_threads
    runs = f"{classifier.streams} at once x {threads} thread{'s' if threads > 1 else ''}"
    provider_line = f"provider: {classifier.providers[0]}" + (f" ({classifier.note})" if classifier.note else "")
    printer.note(f"{provider_line}; model runs: {runs}")
    warning = int8_warning(classifier.provenance)
    if warning:
        printer.note(f"warning: {warning}")


class ResultPrinter:
    """Collects or streams results. Failures always go to stderr as one line; --quiet only silences notes."""

    def __init__(self, stdout: TextIO, stderr: TextIO, *, as_json: bool, quiet: bool, top_k: int) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.as_json = as_json
        self.quiet = quiet
        self.top_k = top_k
        self.rows: list[Prediction] = []
        self.classified = 0
        self.failed = 0
        self._stderr_console = Console(file=stderr, highlight=False, markup=False, soft_wrap=True)

    def note(self, message: str) -> None:
        """An informational line on stderr (which model, which provider, timing), unless --quiet."""
        if not self.quiet:
            self._stderr_console.print(message)

    def warning(self, message: str) -> None:
        """``warning: <message>`` on stderr, even with --quiet (e.g. a symlinked folder skipped as a loop)."""
        self._stderr_console.print(f"warning: {message}")

    def add(self, result: Prediction | Failure) -> None:
        if isinstance(result, Failure):
            self.failed += 1
            self._stderr_console.print(str(result))
        else:
            self.classified += 1
        if self.as_json:
            self.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False, allow_nan=False) + "\n")
        elif isinstance(result, Prediction):
            self.rows.append(result)

    def finish(self) -> None:
        if self.as_json:
            self.stdout.flush()
            return
        if not self.rows:
            return
        from rich.table import Table  # imported on use: a JSON or one-image run starts faster without it

        table = Table(show_edge=False, pad_edge=False, header_style="bold")
        table.add_column("path", overflow="fold")
        table.add_column("label")
        table.add_column("probability", justify="right")
        if self.top_k > 1:
            table.add_column(f"next {self.top_k - 1}", overflow="fold")
        for prediction in self.rows:
            row = [prediction.source, prediction.label, f"{prediction.probability:.3f}"]
            if self.top_k > 1:
                row.append(", ".join(f"{s.label} {s.probability:.3f}" for s in prediction.top_k[1:]))
            table.add_row(*row)
        console = Console(file=self.stdout, highlight=False, markup=False)
        if not console.is_terminal:
            # Piped or redirected: never fold a path across lines; the table is as wide as its content.
            console.width = 100_000
        console.print(table)
        self.stdout.flush()

    def progress(self, results: Iterator[Prediction | Failure], total: int) -> Iterator[Prediction | Failure]:
        """Pass results through, showing a progress bar with throughput and ETA when stderr is a terminal."""
        show = not self.quiet and self._stderr_console.is_terminal and total > 1
        if not show:
            yield from results
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("classifying"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} img/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self._stderr_console,
            transient=True,
        ) as bar:
            task = bar.add_task("classify", total=total, rate="-")
            for result in results:
                bar.advance(task)
                elapsed = bar.tasks[0].elapsed or 0.0
                if elapsed > 0:
                    bar.update(task, rate=f"{bar.tasks[0].completed / elapsed:,.0f}")
                yield result
