"""What ``cifar-infer`` does, as one library function: resolve the model, open it strictly, classify, report."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from PIL import Image

from cifar_edge.runtime.classifier import DEFAULT_BATCH_SIZE, DEFAULT_TOP_K, Classifier
from cifar_edge.runtime.common.command import ExitCode
from cifar_edge.runtime.common.names import RUNS_DIR
from cifar_edge.runtime.cpu import int8_warning
from cifar_edge.runtime.infer.inputs import expand_inputs
from cifar_edge.runtime.infer.report import Reporter
from cifar_edge.runtime.model_file import ModelError, resolve_model_path
from cifar_edge.runtime.providers.strict import ProviderUnavailableError


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
    reporter = Reporter(stdout, stderr, as_json=options.as_json, quiet=options.quiet, top_k=options.top_k)
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
    except ModelError as error:
        stderr.write(f"error: {error}\n")
        return ExitCode.USAGE
    except ProviderUnavailableError as error:
        stderr.write(f"error: {error}\n")
        return ExitCode.PROVIDER_UNAVAILABLE
    _describe_model(reporter, classifier, f"{resolved.path} (from {resolved.origin}")
    items = list(expand_inputs(options.inputs, stdin, warn=reporter.warning))
    started = time.perf_counter()
    saved_pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        if options.max_pixels and saved_pillow_limit is not None and options.max_pixels > saved_pillow_limit:
            Image.MAX_IMAGE_PIXELS = options.max_pixels  # the user raised the limit for this run
        results = classifier.predict_iter(items, top_k=options.top_k, batch_size=options.batch_size)
        for result in reporter.progress(results, total=len(items)):
            reporter.add(result)
    except ModelError as error:  # the model failed at run time (e.g. its output does not match the contract)
        stderr.write(f"error: {error}\n")
        return ExitCode.USAGE
    finally:
        Image.MAX_IMAGE_PIXELS = saved_pillow_limit
        classifier.close()
    seconds = time.perf_counter() - started
    reporter.finish()
    rate = reporter.classified / seconds if seconds > 0 else 0.0
    reporter.note(
        f"classified {reporter.classified} of {reporter.classified + reporter.failed} inputs in {seconds:.2f} s "
        f"({rate:,.0f} img/s)" + (f"; {reporter.failed} failed" if reporter.failed else "")
    )
    return ExitCode.FAILED if reporter.failed else ExitCode.OK


def _describe_model(reporter: Reporter, classifier: Classifier, where: str) -> None:
    """The model, provider and any int8 warning, as notes on stderr (silent with --quiet)."""
    contract = classifier.contract
    reporter.note(
        f"model: {where}; {contract.num_classes} classes, "
        f"{contract.image_size[0]}x{contract.image_size[1]}, sha256 {classifier.sha256[:12]})"
    )
    threads = classifier.intra_op_threads
    runs = f"{classifier.streams} at once x {threads} thread{'s' if threads > 1 else ''}"
    provider_line = f"provider: {classifier.providers[0]}" + (f" ({classifier.note})" if classifier.note else "")
    reporter.note(f"{provider_line}; model runs: {runs}")
    warning = int8_warning(classifier.provenance)
    if warning:
        reporter.note(f"warning: {warning}")
