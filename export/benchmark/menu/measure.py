"""One run of ``cifar-bench``'s menu: its size, FLOPs, accuracy at 1, 2 and 6 passes, and its one-pass speed.

The one-pass fp32 and int8 ONNX files come from ``ensure_artifacts`` (reused when current, else exported through
the parity gate); a run whose record bakes in TTA gets them in its ``one-pass/`` sub-folder, so its own model.onnx
stays as it is. The TTA accuracies come from the run's PyTorch model wrapped the way cifar-export wraps it, on the
same images. Anything that goes wrong fails this row only, in one line; the other runs are still measured.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cifar_edge.export.benchmark.artifacts import VARIANTS, Artifact, ensure_artifacts
from cifar_edge.export.benchmark.config import MENU_PROVIDER, MENU_VARIANTS, BenchConfig
from cifar_edge.export.benchmark.efficiency import FP32_ONNX, count_file
from cifar_edge.export.benchmark.menu.record import SPEED_FIELDS, TTA_ACCURACY_FIELDS, MenuRow
from cifar_edge.export.benchmark.run import export_data_folder, load_bench_data
from cifar_edge.export.benchmark.timing import measure_latency, measure_throughput
from cifar_edge.export.engines import Engine, onnx_engine, torch_engine
from cifar_edge.export.errors import ExportUsageError
from cifar_edge.export.formats.tta import module_for_export, tta_mode
from cifar_edge.export.pipeline import load_export_run
from cifar_edge.export.run_select import resolve_run_dir
from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.common.names import MENU_ONE_PASS_DIR
from cifar_edge.runtime.evaluate.labelled_folder import ArrayImages, LabelledDataError
from cifar_edge.runtime.preprocess import normalize_batch
from cifar_edge.train.models import AIRNET_SIZES
from cifar_edge.train.run.files import LoadedRun

Step = Callable[[str], Any]


def measure_run(run_dir: Path, config: BenchConfig, threads: int, step: Step) -> MenuRow:
    """The menu row of ``run_dir``; a failed row (status "failed", one-line reason) when it cannot be measured."""
    row = MenuRow(run_dir=str(run_dir), run_name=Path(run_dir).resolve().name)
    try:
        run = load_export_run(resolve_run_dir(run_dir))
        describe_model(row, run)
        step("loading the eval images")
        data = load_bench_data(config, run)
    except (ExportUsageError, LabelledDataError) as error:
        row.fail(first_line(error))
        return row
    try:
        _measure(row, run, data, config, threads, step)
    except Exception as error:  # a run that breaks while measured fails its own row; the menu goes on
        row.fail(f"failed while measuring: {first_line(error)}")
    return row


def describe_model(row: MenuRow, run: LoadedRun) -> None:
    """Name, widths (run.json's, or those a sized name such as airnet-s stands for) and parameter count."""
    architecture = run.record.get("architecture") or {}
    row.architecture = str(architecture.get("name"))
    widths = (architecture.get("kwargs") or {}).get("widths") or AIRNET_SIZES.get(row.architecture)
    row.widths = [int(width) for width in widths] if isinstance(widths, list | tuple) else None
    row.model = row.architecture + (" " + "/".join(str(width) for width in row.widths) if row.widths else "")
    row.parameters = int(sum(parameter.numel() for parameter in run.model.parameters()))
    row.run_tta = tta_mode(run.record)


def one_pass_folder(run: LoadedRun) -> Path | None:
    """Where the run's one-pass ONNX files live: None (its own folder) when its record has no TTA, else a
    sub-folder of it."""
    return None if tta_mode(run.record) == "none" else Path(run.run_dir) / MENU_ONE_PASS_DIR


def _percent(top1: np.ndarray, labels: np.ndarray) -> float:
    return round(100.0 * float(np.mean(top1 == labels)), 3)


def _measure(row: MenuRow, run: LoadedRun, data: ArrayImages, config: BenchConfig, threads: int, step: Step) -> None:
    inputs = normalize_batch(data.images, run.contract)
    row.images = len(data)
    for mode, name in TTA_ACCURACY_FIELDS.items():
        step(f"accuracy with {mode} TTA (PyTorch)")
        module = module_for_export(run.model, run.record, requested=mode)
        setattr(row, name, _percent(torch_engine(module).run(inputs, config.batch_size).argmax(axis=1), data.labels))
    variants = [VARIANTS[key] for key in MENU_VARIANTS]
    artifacts = ensure_artifacts(
        Path(run.run_dir),
        run.weights_sha256,
        variants,
        data=export_data_folder(config),
        quick=config.quick,
        step=step,
        tta="none",
        folder=one_pass_folder(run),
    )
    for artifact in artifacts.values():
        row.files[artifact.variant.precision] = str(artifact.path)
        row.notes.extend(f"{artifact.path.relative_to(run.run_dir)}: {note}" for note in artifact.notes)
    engines = _open_engines(row, list(artifacts.values()), inputs, data.labels, config, threads)
    try:
        step(f"latency at batch 1 and throughput at batch {config.batch_size} ({len(engines)} engines, interleaved)")
        _time(row, engines, inputs, config)
    finally:
        for engine in engines.values():
            engine.close()
    fp32 = artifacts[FP32_ONNX.key]
    if fp32.usable:
        row.mflop_per_image = count_file(fp32.path)["mflop_per_image"]


def _open_engines(
    row: MenuRow, artifacts: list[Artifact], inputs: np.ndarray, labels: np.ndarray, config: BenchConfig, threads: int
) -> dict[str, Engine]:
    """Each usable artifact's onnxruntime engine, by precision, with its accuracy set on the row."""
    engines: dict[str, Engine] = {}
    for artifact in artifacts:
        precision = artifact.variant.precision
        if artifact.error is not None:
            row.fail(f"{precision} ONNX: {artifact.error}")
            continue
        engine: Engine | None = None
        try:
            engine = onnx_engine(artifact.path, MENU_PROVIDER, intra_op_threads=threads)
            top1 = engine.run(inputs, config.batch_size).argmax(axis=1)
        except Exception as error:  # a file that does not load or run fails the row, not the menu
            if engine is not None:
                engine.close()
            row.fail(f"{precision} ONNX: cannot load or run {artifact.path.name}: {first_line(error)}")
            continue
        setattr(row, SPEED_FIELDS[precision][2], _percent(top1, labels))
        engines[precision] = engine
    return engines


def _time(row: MenuRow, engines: dict[str, Engine], inputs: np.ndarray, config: BenchConfig) -> None:
    """ms at batch 1 and images/s at the batch size, the engines interleaved (timing.py says how)."""
    forwards = {precision: engine.forward for precision, engine in engines.items()}
    latencies, failed = measure_latency(forwards, inputs, config.repeats)
    rates, failed_rate = measure_throughput(
        {precision: forward for precision, forward in forwards.items() if precision not in failed},
        inputs,
        config.batch_size,
        config.repeats,
    )
    for precision, (p50, _p95) in latencies.items():
        setattr(row, SPEED_FIELDS[precision][1], round(p50, 4))
    for precision, rate in rates.items():
        setattr(row, SPEED_FIELDS[precision][0], round(rate, 1))
    for precision, reason in {**failed, **failed_rate}.items():
        row.fail(f"{precision} ONNX: failed while timing: {reason}")
