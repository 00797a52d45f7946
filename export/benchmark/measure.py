"""``run_benchmark``: every format and provider of one run, measured the same way, in one table.

For each variant (PyTorch eager and every row of the format table: TorchScript, torch.export, ONNX fp32/fp16/int8)
and each provider asked for (cpu, cuda): file size, accuracy on the eval images, top-1 agreement with the eager
PyTorch model (on the CPU), latency p50/p95 at batch 1, throughput at batch 256 and process cold start (timing.py
says how each is measured). Every row is opened by the one opener (export/models.py); a provider that is not really
active (checked the runtime's strict way for ONNX, ``torch.cuda.is_available()`` for torch) gives a skipped row that
says why. torch and onnxruntime run with the same number of threads. Each row also gets its FLOPs per image,
achieved GFLOP/s and share of this machine's peak, measured in the same run (flops.py).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch
from PIL import Image

from cifar_edge.export.benchmark.artifacts import (
    PROVIDERS,
    QUICK_IMAGES,
    VARIANTS,
    Artifact,
    BenchConfig,
    engine_provenance,
    ensure_artifacts,
)
from cifar_edge.export.benchmark.flops import add_efficiency
from cifar_edge.export.benchmark.machine import machine_info
from cifar_edge.export.benchmark.report import evaluate_targets
from cifar_edge.export.benchmark.timing import (
    ColdStartJob,
    measure_cold_starts,
    measure_latency,
    measure_throughput,
)
from cifar_edge.export.config import ExportUsageError
from cifar_edge.export.engines import Engine, torch_engine
from cifar_edge.export.evaluate.data import CIFAR10, load_eval_data, materialize, run_validation_data
from cifar_edge.export.models import open_model
from cifar_edge.export.run_data import load_export_run, resolve_run_dir
from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.labelled import ArrayImages, LabelledDataError
from cifar_edge.runtime.model_file import TTA_PASSES, passes_per_image
from cifar_edge.runtime.preprocess import normalize_batch
from cifar_edge.runtime.session import ProviderUnavailableError, default_intra_op_threads
from cifar_edge.train.run_folder import LoadedRun
from cifar_edge.train.tta import module_for_export, tta_mode

# 2: rows gained mflop_per_image, gflops, peak_gflops, percent_of_peak; the report machine_peak and flops.
# 3: rows gained passes_per_image.
BENCH_SCHEMA_VERSION = 3


@dataclass
class Row:
    variant: str
    format: str
    precision: str
    provider: str
    status: str = "ok"  # "ok", "skipped" or "failed"
    passes_per_image: int | None = None  # forward passes the row's model runs per image (its TTA)
    reason: str | None = None  # why skipped or failed
    file: str | None = None
    size_mb: float | None = None
    accuracy: float | None = None  # percent on the eval images
    agreement: float | None = None  # percent of eval images whose top-1 equals eager PyTorch's (CPU)
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    throughput_ips: float | None = None
    cold_start_s: float | None = None
    cold_start: dict[str, Any] | None = None
    mflop_per_image: float | None = None  # counted from the ONNX graph (efficiency.py)
    gflops: float | None = None  # achieved: mflop_per_image x throughput_ips / 1000
    peak_gflops: float | None = None  # the machine peak this row is compared against (CPU rows only)
    percent_of_peak: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Measured(Protocol):
    status: str  # "ok", "skipped" or "failed"


R = TypeVar("R", bound=_Measured)


@dataclass
class BenchResult(Generic[R]):
    """What a benchmark returns, one run's table or a menu: its JSON document and its rows (a failed row: exit 1)."""

    report: dict[str, Any]
    rows: list[R]

    @property
    def exit_code(self) -> int:
        return 1 if any(row.status == "failed" for row in self.rows) else 0


def load_bench_data(config: BenchConfig, run: LoadedRun) -> ArrayImages:
    limit = config.images or (QUICK_IMAGES if config.quick else None)
    if config.data is not None:
        data = load_eval_data(config.data, run.contract, data_root=config.data_root, limit=limit)
        return materialize(data)[0]
    from_run = run_validation_data(run.record, run.contract, limit)
    if from_run is None:
        raise LabelledDataError("run.json has no data record to rebuild its validation images from; pass --data PATH")
    return from_run


def export_data_folder(config: BenchConfig) -> Path | None:
    """The labelled folder an export made on the way verifies and calibrates on; None: the run's own images."""
    return Path(config.data) if config.data not in (None, CIFAR10) else None


def run_benchmark(config: BenchConfig, step: Callable[[str], Any] | None = None) -> BenchResult[Row]:
    """Measure every requested row; ExportUsageError / LabelledDataError (exit 2) when run or data are unusable."""
    step = step or (lambda _description: None)
    unknown = [key for key in config.formats if key not in VARIANTS]
    if unknown or not config.formats:
        raise ExportUsageError(f"--formats takes {', '.join(VARIANTS)}; got {', '.join(unknown) or 'none'}")
    bad_providers = [name for name in config.providers if name not in PROVIDERS]
    if bad_providers or not config.providers:
        raise ExportUsageError(f"--providers takes cpu,cuda; got {', '.join(bad_providers) or 'none'}")
    run_dir = resolve_run_dir(config.run_dir)
    run = load_export_run(run_dir)
    threads = config.threads or default_intra_op_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _measure(config, run, run_dir, threads, step)
    finally:
        torch.set_num_threads(previous_threads)


def _measure(
    config: BenchConfig, run: LoadedRun, run_dir: Path, threads: int, step: Callable[[str], Any]
) -> BenchResult[Row]:
    step("loading the eval images")
    data = load_bench_data(config, run)
    inputs = normalize_batch(data.images, run.contract)
    reference_module = module_for_export(run.model, run.record)
    reference = torch_engine(reference_module).run(inputs, config.batch_size)
    reference_top1 = reference.argmax(axis=1)
    variants = [VARIANTS[key] for key in dict.fromkeys(config.formats)]
    folder_data = export_data_folder(config)
    artifacts = ensure_artifacts(run_dir, run.weights_sha256, variants, data=folder_data, quick=config.quick, step=step)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="cifar-bench-") as scratch:
        image_path = Path(scratch) / "cold_start.png"
        Image.fromarray(data.images[0], "RGB").save(image_path)
        shared = _Shared(
            run=run,
            config=config,
            threads=threads,
            inputs=inputs,
            labels=data.labels,
            reference_top1=reference_top1,
            image_path=image_path,
        )
        opened: dict[int, _Opened] = {}
        for variant in variants:
            for provider in config.providers:
                step(f"loading {variant.label} {variant.precision} on {provider}; accuracy")
                row = Row(variant.key, variant.label, variant.precision, provider)
                rows.append(row)
                engine = _open_row(row, artifacts[variant.key], provider, shared)
                if engine is not None:
                    opened[len(rows) - 1] = engine
        try:
            _time_rows(rows, opened, shared, step)
        finally:
            for row_engine in opened.values():
                row_engine.engine.close()
    step(f"machine peak (one big Conv and QLinearConv, {threads} threads)")
    machine_peak, flops = add_efficiency(rows, artifacts, run_dir, run.weights_sha256, threads)
    report = {
        "schema_version": BENCH_SCHEMA_VERSION,
        "kind": "cifar-edge benchmark",
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run_dir": str(run_dir),
        "run_name": Path(run_dir).resolve().name,
        "machine": machine_info(threads),
        "machine_peak": machine_peak,
        "data": {**data.description, "images": len(data)},
        "settings": {
            "quick": config.quick,
            "threads": threads,
            "batch_size": config.batch_size,
            "latency_batch_size": 1,
            "repeats": asdict(config.repeats),
            "providers": list(config.providers),
            "formats": list(config.formats),
            "timing": "latency and throughput: model only, preprocessed float32 inputs in memory, after warm-up; "
            "cold start: fresh process, import + load + classify one image file, end to end",
        },
        "rows": [row.to_dict() for row in rows],
        "flops": flops,
        "targets": evaluate_targets(rows),
    }
    return BenchResult(report, rows)


@dataclass
class _Shared:
    """What every row is measured against: the same images, labels, reference predictions and settings."""

    run: LoadedRun
    config: BenchConfig
    threads: int
    inputs: np.ndarray  # float32 NCHW, normalised once
    labels: np.ndarray
    reference_top1: np.ndarray
    image_path: Path  # the image file the cold-start processes classify


@dataclass
class _Opened:
    engine: Engine
    cold_start: ColdStartJob
    first_label: str  # what it predicts for the cold-start image, in this process


def _open_row(row: Row, artifact: Artifact, provider: str, shared: _Shared) -> _Opened | None:
    """Load the row's engine and measure its accuracy and agreement; None when the row is skipped or failed."""
    row.file = str(artifact.path)
    row.notes.extend(artifact.notes)
    if artifact.error is not None:
        row.status, row.reason = "failed", artifact.error
        return None
    row.size_mb = round(artifact.model_file.stat().st_size / 1e6, 4)
    variant = artifact.variant
    target = Path(shared.run.run_dir) if variant.artifact is None else artifact.path
    try:
        engine = open_model(target, provider, threads=shared.threads).engine
    except ProviderUnavailableError as error:  # strict, as in cifar-infer: this row cannot run here
        row.status, row.reason = "skipped", error.cause
        return None
    except Exception as error:  # an artifact that does not load is this row's failure, not the benchmark's
        row.status, row.reason = "failed", f"cannot load: {first_line(error)}"
        return None
    if variant.artifact is None:  # the run's own module, wrapped in the TTA its record names
        row.passes_per_image = TTA_PASSES[tta_mode(shared.run.record)]
    else:  # read from the engine just opened: the file is not opened a second time for its metadata
        row.passes_per_image = passes_per_image(engine_provenance(engine))
    try:
        top1 = engine.run(shared.inputs, shared.config.batch_size).argmax(axis=1)
    except Exception as error:  # e.g. a provider that loads but fails at run time
        engine.close()
        row.status, row.reason = "failed", f"failed while running: {first_line(error)}"
        return None
    row.accuracy = round(100.0 * float(np.mean(top1 == shared.labels)), 3)
    row.agreement = round(100.0 * float(np.mean(top1 == shared.reference_top1)), 3)
    job = ColdStartJob(variant.needs_torch, target, shared.image_path, provider, shared.threads)
    return _Opened(engine, job, shared.run.contract.class_names[int(top1[0])])


def _time_rows(rows: list[Row], opened: dict[int, _Opened], shared: _Shared, step: Callable[[str], Any]) -> None:
    """Latency, throughput and cold start of every open engine, each phase in interleaved rounds."""
    config = shared.config

    def fail(failed: dict[Any, str], phase: str) -> None:
        for index, reason in failed.items():
            rows[index].status, rows[index].reason = "failed", f"failed while timing {phase}: {reason}"
            opened.pop(index).engine.close()

    step(f"latency at batch 1 ({len(opened)} engines, interleaved)")
    forwards = {index: row.engine.forward for index, row in opened.items()}
    latencies, failed = measure_latency(forwards, shared.inputs, config.repeats)
    for index, (p50, p95) in latencies.items():
        rows[index].latency_p50_ms, rows[index].latency_p95_ms = round(p50, 4), round(p95, 4)
    fail(failed, "latency")
    step(f"throughput at batch {config.batch_size} ({len(opened)} engines, interleaved)")
    forwards = {index: row.engine.forward for index, row in opened.items()}
    rates, failed = measure_throughput(forwards, shared.inputs, config.batch_size, config.repeats)
    for index, rate in rates.items():
        rows[index].throughput_ips = round(rate, 1)
    fail(failed, "throughput")
    if not config.cold_start:
        return
    step(f"cold start of {len(opened)} fresh processes x {config.repeats.cold_starts}")
    starts, failed = measure_cold_starts({index: engine.cold_start for index, engine in opened.items()}, config.repeats)
    for index, measured in starts.items():
        rows[index].cold_start_s = round(measured.seconds, 4)
        rows[index].cold_start = measured.to_dict()
        if measured.label != opened[index].first_label:
            rows[index].notes.append(
                f"cold-start process predicted {measured.label!r}, in-process {opened[index].first_label!r}"
            )
    for index, reason in failed.items():
        rows[index].notes.append(f"cold start: {reason}")
