"""``export_run``: run folder in, verified artifacts out. The one library function behind ``cifar-export``.

Every artifact is written to a temporary name beside its final path, verified there, and renamed only when the
parity gate passes (``atomic_path``): a failing gate leaves nothing under the final name, and an older good
artifact of the same name stays untouched. ``<artifact>.parity.json`` is written beside each passing artifact.

Before any work the destinations are checked (``check_destinations``: writable, room enough, nothing immutable in
the way), and each artifact's ``<artifact>.lock`` is held from before its first write to after its report: a second
export of the same artifact fails at once (LockedError, exit 5) instead of interleaving with this one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from torch import nn

from cifar_edge.export.config import ExportConfig, ExportFailedError, ExportUsageError
from cifar_edge.export.destinations import (
    Target,
    artifact_locks,
    check_destinations,
    parity_path_of,
    read_if_file,
    restore,
    targets_for,
    writes_pixels,
)
from cifar_edge.export.formats import FLOAT_INPUT, WriteJob
from cifar_edge.export.formats.fold import inference_form
from cifar_edge.export.formats.onnx import export_onnx_fp32
from cifar_edge.export.formats.pixels import pixel_contract
from cifar_edge.export.gate.data import ExportData, gather_export_data
from cifar_edge.export.gate.parity import GateInputs, ParityReport, prepare_gate_inputs, run_gate
from cifar_edge.export.gate.preprocess import PreprocessReport, check_preprocessing
from cifar_edge.export.results import ArtifactResult, ExportProgress, ExportResult
from cifar_edge.export.run_data import load_export_run
from cifar_edge.runtime.common.atomic_io import atomic_folder, atomic_path, atomic_write_text
from cifar_edge.train.run_folder import LoadedRun
from cifar_edge.train.tta import module_for_export, tta_mode


@dataclass
class ExportContext:
    """Everything loaded once per export and shared by its artifacts."""

    run: LoadedRun
    config: ExportConfig
    module: nn.Module  # the eval-mode module every artifact must reproduce (network + TTA wrapper if requested)
    tta: str
    data: ExportData
    gate_inputs: GateInputs | None
    preprocessing: PreprocessReport | None
    progress: ExportProgress
    notes: list[str] = field(default_factory=list)
    # What the artifacts are exported from: ``module`` with its BatchNorms folded (formats/fold.py).
    export_module: nn.Module | None = None
    fp32_cache: onnx.ModelProto | None = None

    def fp32_graph(self, module: nn.Module) -> onnx.ModelProto:
        """The fp32 ONNX graph of ``module``, exported once per run and reused by the fp16/int8 conversions."""
        if module is not self.export_module:
            return export_onnx_fp32(module, self.run.contract, self.config.opset)
        if self.fp32_cache is None:
            self.fp32_cache = export_onnx_fp32(module, self.run.contract, self.config.opset)
        return self.fp32_cache

    def write_job(self, module: nn.Module) -> WriteJob:
        return WriteJob(
            run=self.run,
            module=module,
            config=self.config,
            tta=self.tta,
            calibration=self.data.calibration,
            fp32_graph=lambda: self.fp32_graph(module),
        )


def prepare_export(
    run_dir: Path, config: ExportConfig, progress: ExportProgress | None = None, run: LoadedRun | None = None
) -> ExportContext:
    """Load the run (unless given), the real images and the reference outputs; ExportUsageError when unusable."""
    progress = progress or ExportProgress(enabled=False)
    run = run if run is not None else load_export_run(run_dir)
    try:
        tta = tta_mode(run.record, config.tta)
    except ValueError as error:  # a --tta this version does not know
        raise ExportUsageError(str(error)) from None
    module = module_for_export(run.model, run.record, config.tta)
    needs_calibration = config.quantize == "int8"
    with progress.step("loading real images"):
        data = gather_export_data(
            run.record,
            run.contract,
            data_path=config.data,
            verify_images=config.verify_images if config.verify else 0,
            calibration_images=config.calibration_images if needs_calibration else 0,
        )
    if needs_calibration and (data.calibration is None or len(data.calibration) == 0):
        raise ExportUsageError(
            "--quantize int8 needs real images to calibrate on and this run offers none "
            f"({data.notes[0] if data.notes else 'empty data'}); pass --data PATH (a labelled image folder)"
        )
    if needs_calibration and config.verify and (data.verification is None or data.verification.labels is None):
        raise ExportUsageError("--quantize int8 is gated on accuracy and needs labelled images: pass --data PATH")
    gate_inputs = preprocessing = None
    if config.verify:
        with progress.step("reference outputs of the PyTorch model"):
            gate_inputs = prepare_gate_inputs(
                module,
                run.contract,
                data.verification,
                config.probe_batch_sizes,
                config.seed,
                pixel_files=[*config.preprocess_files, *data.sample_files] if writes_pixels(config) else None,
            )
        with progress.step("preprocessing parity (runtime vs torchvision)"):
            preprocessing = check_preprocessing(
                run.contract,
                [*config.preprocess_files, *data.sample_files],
                threshold=config.thresholds.preprocess_max_abs_diff,
                seed=config.seed,
            )
    notes = list(data.notes)
    if not config.verify:
        notes.append("--no-verify: artifacts are written without the parity gate")
    return ExportContext(
        run,
        config,
        module,
        tta,
        data,
        gate_inputs=gate_inputs,
        preprocessing=preprocessing,
        progress=progress,
        notes=notes,
        export_module=inference_form(module),
    )


def export_run(
    run_dir: str | Path, config: ExportConfig | None = None, progress: ExportProgress | None = None
) -> ExportResult:
    """Export ``run_dir`` as ``config`` asks; gate failures are in the result (``exit_code`` 1), not raised."""
    config = config or ExportConfig()
    run_dir = Path(run_dir)
    targets = targets_for(config, run_dir)
    run = load_export_run(run_dir)
    if writes_pixels(config):
        pixel_contract(run.contract)  # a contract the graph cannot resize exactly: a usage error before any work
    check_destinations(targets, run)
    with artifact_locks(targets):
        context = prepare_export(run_dir, config, progress, run=run)
        result = ExportResult(run_dir=run_dir, notes=context.notes)
        for target in targets:
            result.artifacts.append(export_artifact(context, target))
    return result


def export_artifact(context: ExportContext, target: Target, module: nn.Module | None = None) -> ArtifactResult:
    """Write one artifact under a temporary name, gate it, and rename it into place only if the gate passes.

    ``module`` overrides what gets exported (tests pass a deliberately broken copy; default: the folded inference
    form); the gate always compares against ``context.module``, the run's unfolded eval-mode model.
    """
    started = time.perf_counter()
    module = (context.export_module or context.module) if module is None else module
    report: ParityReport | None = None
    parity_path = parity_path_of(target.path)
    # The parity report is written before the artifact is renamed into place, so a failure anywhere leaves the
    # previous pair as it was: writing the report fails -> the new artifact is discarded; renaming the artifact
    # fails -> the previous report is put back.
    previous_parity = read_if_file(parity_path)
    parity_written = False
    digest = size = None
    with context.progress.step(f"{target.format} {target.precision} -> {target.path.name}"):
        try:
            with (atomic_folder if target.row.is_folder else atomic_path)(target.path) as temp_path:
                target.row.write(context.write_job(module), temp_path)
                report = _gate(context, target, temp_path)
                if report is not None and not report.passed:
                    raise _GateFailed
                data = target.row.model_file(temp_path).read_bytes()
                digest, size = hashlib.sha256(data).hexdigest(), len(data)
                if report is not None:
                    _write_report(parity_path, report, digest, size)
                    parity_written = True
        except _GateFailed:
            return _not_written(target, started, report)
        except ExportFailedError as error:
            return _not_written(target, started, None, str(error))
        except BaseException:
            if parity_written:  # the artifact did not replace the previous one: neither may its report
                restore(parity_path, previous_parity)
            raise
    if report is None and previous_parity is not None:
        # --no-verify replaced the artifact: a report about the previous file must not stay beside the new one.
        with contextlib.suppress(OSError):
            parity_path.unlink()
    return ArtifactResult(
        target.format,
        target.precision,
        target.path,
        True,
        report,
        parity_path=parity_path if report is not None else None,
        size_bytes=size,
        sha256=digest,
        seconds=time.perf_counter() - started,
    )


def _gate(context: ExportContext, target: Target, path: Path) -> ParityReport | None:
    """The parity gate's report on the file at ``path``; None with --no-verify."""
    if not context.config.verify:
        return None
    assert context.gate_inputs is not None
    contract = context.run.contract
    return run_gate(
        target.row,
        path,
        contract if target.row.input_form(context.config) == FLOAT_INPUT else pixel_contract(contract),
        context.gate_inputs,
        thresholds=context.config.thresholds,
        preprocessing=context.preprocessing,
        artifact_name=target.path.name,
    )


def _write_report(path: Path, report: ParityReport, digest: str, size: int) -> None:
    document = {**report.to_dict(), "sha256": digest, "size_bytes": size}
    atomic_write_text(path, json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n")


def _not_written(
    target: Target, started: float, report: ParityReport | None, error: str | None = None
) -> ArtifactResult:
    seconds = time.perf_counter() - started
    return ArtifactResult(target.format, target.precision, target.path, False, report, seconds=seconds, error=error)


class _GateFailed(Exception):
    """Raised inside atomic_path so the temporary file is discarded instead of renamed."""
