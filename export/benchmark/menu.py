"""``cifar-bench RUN_A RUN_B ...``: a menu of runs measured on this machine in one process, one row each, so a size
and a TTA mode can be picked for a device.

Each row (``MenuRow``) says what the run's model is, what it costs per image at one pass (MFLOP, img/s, ms) and what
it scores at 1, 2 and 6 passes; every field carries its description in its annotation (menu.json's ``fields``), so
the file explains itself. Runs are measured one after the other with the same threads, images rule and repeats.

The one-pass fp32 and int8 ONNX files come from ``ensure_artifacts`` (reused when current, else exported through
the parity gate); a run whose record bakes in TTA gets them in its ``one-pass/`` sub-folder, so its own model.onnx
stays as it is. The TTA accuracies come from the run's PyTorch model wrapped the way cifar-export wraps it, on the
same images. Anything that goes wrong fails that run's row only, in one line; the other runs are still measured.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import numpy as np
import torch

from cifar_edge.export.benchmark.artifacts import (
    FP32_ONNX,
    MENU_PROVIDER,
    MENU_VARIANTS,
    QUICK_IMAGES,
    VARIANTS,
    Artifact,
    BenchConfig,
    ensure_artifacts,
)
from cifar_edge.export.benchmark.flops import count_file
from cifar_edge.export.benchmark.machine import machine_info
from cifar_edge.export.benchmark.measure import BenchResult, export_data_folder, load_bench_data
from cifar_edge.export.benchmark.timing import measure_latency, measure_throughput
from cifar_edge.export.config import ExportUsageError
from cifar_edge.export.engines import Engine, torch_engine
from cifar_edge.export.models import open_model
from cifar_edge.export.run_data import load_export_run, resolve_run_dir
from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.common.names import MENU_ONE_PASS_DIR
from cifar_edge.runtime.labelled import ArrayImages, LabelledDataError
from cifar_edge.runtime.model_file import TTA_PASSES
from cifar_edge.runtime.preprocess import normalize_batch
from cifar_edge.runtime.session import default_intra_op_threads
from cifar_edge.train.models import AIRNET_SIZES
from cifar_edge.train.run_folder import LoadedRun
from cifar_edge.train.tta import module_for_export, tta_mode

MENU_SCHEMA_VERSION = 1
Step = Callable[[str], Any]


@dataclass
class MenuRow:
    run_dir: Annotated[str, "the run folder, as given on the command line"]
    run_name: Annotated[str, "the run folder's name"]
    status: Annotated[str, '"ok", or "failed": reason says why (what was measured before the failure is kept)'] = "ok"
    reason: Annotated[str | None, "why the row failed, one line"] = None
    model: Annotated[str | None, "model name and size: run.json architecture name and widths"] = None
    architecture: Annotated[str | None, "run.json architecture.name"] = None
    widths: Annotated[list[int] | None, "architecture.kwargs.widths, or a sized name's (null: none known)"] = None
    parameters: Annotated[int | None, "parameters of the network, frozen ones included"] = None
    run_tta: Annotated[str | None, "the TTA the run's record names (what cifar-export bakes in by default)"] = None
    images: Annotated[int | None, "eval images every accuracy of the row is measured on"] = None
    mflop_per_image: Annotated[float | None, "MFLOP per image at one pass, counted from the fp32 ONNX graph"] = None
    accuracy_1pass: Annotated[float | None, "% top-1 of the fp32 ONNX model at one pass (no TTA)"] = None
    accuracy_flip: Annotated[
        float | None, f"% top-1 of the PyTorch model with flip TTA ({TTA_PASSES['flip']} passes)"
    ] = None
    accuracy_flip_shift: Annotated[
        float | None, f"% top-1 of the PyTorch model with flip_shift TTA ({TTA_PASSES['flip_shift']} passes)"
    ] = None
    int8_accuracy_1pass: Annotated[float | None, "% top-1 of the int8 ONNX model at one pass"] = None
    passes_per_image: Annotated[int, "forward passes per image of the timed models (the speed fields)"] = 1
    fp32_images_per_second: Annotated[float | None, "fp32 ONNX images/s at settings.batch_size, onnxruntime CPU"] = None
    fp32_latency_ms: Annotated[float | None, "fp32 ONNX median ms per call at batch 1, onnxruntime CPU"] = None
    int8_images_per_second: Annotated[float | None, "int8 ONNX images/s at settings.batch_size, onnxruntime CPU"] = None
    int8_latency_ms: Annotated[float | None, "int8 ONNX median ms per call at batch 1, onnxruntime CPU"] = None
    files: Annotated[dict[str, str], "the one-pass ONNX files measured, by precision"] = field(default_factory=dict)
    notes: Annotated[list[str], "how the files were obtained (reused, exported now) and other remarks"] = field(
        default_factory=list
    )

    def fail(self, reason: str) -> None:
        """Mark the row failed; the first reason is the row's, later ones become notes."""
        if self.status == "failed":
            self.notes.append(reason)
            return
        self.status, self.reason = "failed", reason

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The accuracies measured through PyTorch with TTA, by mode (the one-pass one comes from the fp32 ONNX file).
TTA_ACCURACY_FIELDS = {"flip": "accuracy_flip", "flip_shift": "accuracy_flip_shift"}
# The timed fields of each precision: (images/s at the batch size, ms at batch 1), and the accuracy field.
SPEED_FIELDS = {
    "fp32": ("fp32_images_per_second", "fp32_latency_ms", "accuracy_1pass"),
    "int8": ("int8_images_per_second", "int8_latency_ms", "int8_accuracy_1pass"),
}


def field_docs() -> dict[str, str]:
    """menu.json's ``fields``: every record field and what it holds."""
    hints = get_type_hints(MenuRow, include_extras=True)
    return {name: hint.__metadata__[0] for name, hint in hints.items()}


def run_menu(config: BenchConfig, step: Callable[[str], Any] | None = None) -> BenchResult[MenuRow]:
    """Measure every run of ``config.run_dirs``; the menu.json document and its rows."""
    threads = config.threads or default_intra_op_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        for index, run_dir in enumerate(config.run_dirs, start=1):
            prefix = f"[{index}/{len(config.run_dirs)}] {Path(run_dir).name}: "
            rows.append(measure_run(Path(run_dir), config, threads, _prefixed(step, prefix)))
    finally:
        torch.set_num_threads(previous_threads)
    report = {
        "schema_version": MENU_SCHEMA_VERSION,
        "kind": "cifar-edge benchmark menu",
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(threads),
        "settings": _settings(config, threads),
        "fields": field_docs(),
        "runs": [row.to_dict() for row in rows],
    }
    return BenchResult(report, rows)


def _prefixed(step: Callable[[str], Any] | None, prefix: str) -> Callable[[str], Any]:
    return (lambda _text: None) if step is None else (lambda text: step(prefix + text))


def _settings(config: BenchConfig, threads: int) -> dict[str, Any]:
    return {
        "quick": config.quick,
        "threads": threads,
        "batch_size": config.batch_size,
        "latency_batch_size": 1,
        "images": config.images or (QUICK_IMAGES if config.quick else None),
        "data": config.data or "each run's validation split",
        "provider": MENU_PROVIDER,
        "variants": list(MENU_VARIANTS),
        "passes_per_image": 1,
        "tta_passes": dict(TTA_PASSES),
        "repeats": asdict(config.repeats),
        "timing": "model only, preprocessed float32 inputs in memory, after warm-up; each run's fp32 and int8 "
        "engines interleaved, the runs one after the other",
    }


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
        _measure(row, run, data, config, threads=threads, step=step)
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


def _measure(row: MenuRow, run: LoadedRun, data: ArrayImages, config: BenchConfig, *, threads: int, step: Step) -> None:
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
    engines = _open_engines(row, list(artifacts.values()), inputs, data.labels, config=config, threads=threads)
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
    row: MenuRow,
    artifacts: list[Artifact],
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    config: BenchConfig,
    threads: int,
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
            engine = open_model(artifact.path, MENU_PROVIDER, threads=threads).engine
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
