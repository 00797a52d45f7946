"""The parity gate: does the artifact compute what the eval-mode PyTorch model computes?

Inputs: (a) real images (the run's validation images, normalised with the runtime's ``normalize_batch``) and
(b) random images in batches of 1, 2, 7 and 64 (each batch is one forward call, so a frozen batch axis fails).
Measures per backend: max and mean |logit difference|, top-1 agreement, and the accuracy of both on labelled images.
Checks by precision (thresholds in config.Thresholds):

- fp32 (ONNX, TorchScript, exported program): max |diff| <= 1e-4 and 100% top-1 agreement, on every input set;
- fp16: top-1 agreement >= 99.5% on the real images (on the probes when there are none);
- int8: accuracy at most 1.0 percentage point below fp32 PyTorch on the labelled images;
- always: every probe batch runs with output (N, classes) and finite values; the artifact carries the run's contract.

A file in the pixel input form also gets the raw-pixel checks of ``gate/pixels.py``: real images at other sizes
than the contract's, fed as pixels, against the training-time preprocessing; and its Resize against Pillow's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from cifar_edge.export.config import Thresholds
from cifar_edge.export.engines import Engine, OpenOptions, torch_engine
from cifar_edge.export.formats import ArtifactFormat
from cifar_edge.export.formats.metadata import read_entries
from cifar_edge.export.gate.checks import Check, Comparison, bounded, compare, finite_or_none
from cifar_edge.export.gate.pixels import PixelInputs, prepare_pixel_inputs, resize_check, sized_results
from cifar_edge.export.gate.preprocess import PreprocessReport
from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.labelled import ArrayImages
from cifar_edge.runtime.preprocess import normalize_batch
from cifar_edge.runtime.session import ProviderUnavailableError

VALIDATION = "real images"
PROBES = "probes"


@dataclass
class GateInputs:
    """Inputs and the reference model's logits, computed once per export and shared by every artifact."""

    verification: np.ndarray | None  # float32 (N, 3, H, W)
    labels: np.ndarray | None  # int64 (N,)
    verification_source: str | None
    probes: dict[int, np.ndarray]  # batch size -> float32 (B, 3, H, W)
    reference_verification: np.ndarray | None
    reference_probes: dict[int, np.ndarray]
    pixels: PixelInputs | None = None  # the pixel-form checks' inputs (None: no artifact takes pixels)


def prepare_gate_inputs(
    module: nn.Module,
    contract: Contract,
    images: ArrayImages | None,
    probe_batch_sizes: Sequence[int],
    seed: int,
    *,
    pixel_files: Sequence[Path] | None = None,
) -> GateInputs:
    """Normalise the real images the runtime's way, draw the probes, and run the reference model on both.

    ``pixel_files``: when not None, some artifact takes pixels: also make the pixel-form checks' inputs, from the real
    images and these files (read at their own sizes)."""
    height, width = contract.image_size
    rng = np.random.default_rng(seed)
    probes = {
        size: normalize_batch(rng.integers(0, 256, size=(size, height, width, 3), dtype=np.uint8), contract)
        for size in probe_batch_sizes
    }
    verification = normalize_batch(images.images, contract) if images is not None and len(images) else None
    reference = torch_engine(module)
    return GateInputs(
        verification=verification,
        labels=images.labels if verification is not None else None,
        verification_source=images.description["source"] if verification is not None else None,
        probes=probes,
        reference_verification=reference.run(verification) if verification is not None else None,
        reference_probes={size: reference.forward(batch) for size, batch in probes.items()},
        pixels=None if pixel_files is None else prepare_pixel_inputs(module, contract, images, pixel_files, seed),
    )


@dataclass
class BackendResult:
    backend: str
    comparisons: list[Comparison] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)


@dataclass
class ParityReport:
    artifact: str
    format: str
    precision: str
    thresholds: Thresholds
    backends: list[BackendResult] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)  # artifact-wide: loading, contract, preprocessing
    preprocessing: PreprocessReport | None = None
    verification_source: str | None = None
    notes: list[str] = field(default_factory=list)

    def all_checks(self) -> list[tuple[str, Check]]:
        return [("", check) for check in self.checks] + [
            (result.backend, check) for result in self.backends for check in result.checks
        ]

    @property
    def passed(self) -> bool:
        checks = self.all_checks()
        return bool(checks) and all(check.passed for _, check in checks)

    def failures(self) -> list[str]:
        return [
            f"{backend + ': ' if backend else ''}{check.describe()}"
            for backend, check in self.all_checks()
            if not check.passed
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: a measurement that is not finite (a broken artifact's NaN logits) is null; failures() says so."""
        return finite_or_none(
            {
                "artifact": self.artifact,
                "format": self.format,
                "precision": self.precision,
                "passed": self.passed,
                "thresholds": asdict(self.thresholds),
                "verification_source": self.verification_source,
                "checks": [asdict(check) for check in self.checks],
                "backends": [asdict(result) for result in self.backends],
                "preprocessing": self.preprocessing.to_dict() if self.preprocessing else None,
                "notes": self.notes,
            }
        )


def _contract_check(backend: Engine, expected: Contract) -> Check:
    try:
        contract, provenance = read_entries(backend.metadata)
    except (ValueError, KeyError) as error:
        return Check("carries the run's contract", False, detail=str(error))
    if contract != expected:
        return Check("carries the run's contract", False, detail="embedded contract differs from run.json's")
    return Check("carries the run's contract", True, detail=f"precision {provenance.get('precision')}")


def _probe_outputs(backend: Engine, inputs: GateInputs, num_classes: int) -> tuple[dict[int, np.ndarray], Check]:
    """Each probe batch as one forward call; the check fails on errors, wrong shapes or non-finite values."""
    outputs, problems = {}, []
    for size, batch in inputs.probes.items():
        try:
            output = np.asarray(backend.forward(batch))
        except Exception as error:  # a frozen batch axis or a broken graph shows up as a runtime error here
            problems.append(f"batch {size}: {type(error).__name__}: {first_line(error)}")
            continue
        if output.shape != (size, num_classes):
            problems.append(f"batch {size}: output shape {output.shape}, expected {(size, num_classes)}")
        elif not np.isfinite(output).all():
            problems.append(f"batch {size}: non-finite outputs")
        else:
            outputs[size] = output
    sizes = ", ".join(str(size) for size in inputs.probes)
    return outputs, Check(
        f"batch sizes {sizes} run, finite (N, {num_classes}) outputs", not problems, detail="; ".join(problems)
    )


def _precision_checks(precision: str, comparisons: dict[str, Comparison], thresholds: Thresholds) -> list[Check]:
    checks = []
    if precision == "fp32":
        for name, comparison in comparisons.items():
            detail = f"{comparison.inputs} inputs"
            checks.append(
                bounded(
                    f"max |logit diff| on {name}", comparison.max_abs_diff, "<=", thresholds.fp32_max_abs_diff, detail
                )
            )
            checks.append(
                bounded(
                    f"top-1 agreement on {name}", comparison.top1_agreement, ">=", thresholds.fp32_min_agreement, detail
                )
            )
    elif precision == "fp16":
        name = VALIDATION if VALIDATION in comparisons else PROBES
        if name in comparisons:
            comparison = comparisons[name]
            checks.append(
                bounded(
                    f"top-1 agreement on {name}",
                    comparison.top1_agreement,
                    ">=",
                    thresholds.fp16_min_agreement,
                    f"{comparison.inputs} inputs",
                )
            )
    elif precision == "int8":
        comparison = comparisons.get(VALIDATION)
        if comparison is None or comparison.reference_accuracy is None or comparison.artifact_accuracy is None:
            checks.append(Check("accuracy drop vs fp32 PyTorch", False, detail="needs labelled real images"))
        else:
            drop = comparison.reference_accuracy - comparison.artifact_accuracy
            detail = (
                f"{comparison.artifact_accuracy:.2f}% vs {comparison.reference_accuracy:.2f}% "
                f"on {comparison.inputs} images"
            )
            checks.append(
                bounded("accuracy drop vs fp32 PyTorch (pp)", drop, "<=", thresholds.int8_max_accuracy_drop_pp, detail)
            )
    return checks


def verify_backend(
    backend: Engine, precision: str, contract: Contract, inputs: GateInputs, thresholds: Thresholds
) -> BackendResult:
    result = BackendResult(backend.name)
    result.checks.append(_contract_check(backend, contract))
    probe_outputs, probe_check = _probe_outputs(backend, inputs, contract.num_classes)
    result.checks.append(probe_check)
    comparisons: dict[str, Comparison] = {}
    if inputs.verification is not None and inputs.reference_verification is not None:
        try:
            output = backend.run(inputs.verification)
        except Exception as error:  # reported as a failed check, never a crash of the whole export
            detail = f"{type(error).__name__}: {first_line(error)}"
            result.checks.append(Check(f"runs on {VALIDATION}", False, detail=detail))
        else:
            comparisons[VALIDATION] = compare(VALIDATION, inputs.reference_verification, output, inputs.labels)
            result.checks.append(Check(f"finite outputs on {VALIDATION}", bool(np.isfinite(output).all())))
    if probe_outputs:
        sizes = sorted(probe_outputs)
        reference = np.concatenate([inputs.reference_probes[size] for size in sizes])
        comparisons[PROBES] = compare(PROBES, reference, np.concatenate([probe_outputs[size] for size in sizes]), None)
    result.comparisons = list(comparisons.values())
    result.checks.extend(_precision_checks(precision, comparisons, thresholds))
    if backend.takes_pixels and inputs.pixels is not None:
        sized_comparisons, sized_checks = sized_results(backend, precision, inputs.pixels, thresholds)
        result.comparisons.extend(sized_comparisons)
        result.checks.extend(sized_checks)
    return result


def gate_engines(row: ArtifactFormat, path: Path) -> tuple[list[Engine], list[str]]:
    """Every way the gate runs an artifact here: on the row's first provider, and on each other one (ONNX: CUDA)
    where it is really active; the notes say which were not."""
    engines: list[Engine] = []
    notes: list[str] = []
    row.check(path)  # e.g. onnx.checker, before onnxruntime is trusted with the file
    for index, provider in enumerate(row.gate_providers):
        try:
            engines.append(row.open(path, OpenOptions(provider=provider)))
        except ProviderUnavailableError as error:
            if index == 0:
                raise
            notes.append(
                f"{provider.upper()}: not active ({error.cause}); verified on {row.gate_providers[0].upper()} only"
            )
    return engines, notes


def run_gate(
    row: ArtifactFormat,
    path: Path,
    contract: Contract,
    inputs: GateInputs,
    *,
    thresholds: Thresholds,
    preprocessing: PreprocessReport | None = None,
    artifact_name: str | None = None,
) -> ParityReport:
    report = ParityReport(
        artifact=artifact_name or path.name,
        format=row.format,
        precision=row.precision,
        thresholds=thresholds,
        preprocessing=preprocessing,
        verification_source=inputs.verification_source,
    )
    if inputs.verification is None:
        report.notes.append("no real images: compared on random probes only")
    if preprocessing is not None:
        report.checks.append(
            bounded(
                "preprocessing: runtime vs torchvision max |diff|",
                preprocessing.max_abs_diff if preprocessing.passed or not _errors(preprocessing) else float("inf"),
                "<=",
                preprocessing.threshold,
                f"{len(preprocessing.files)} files" + (f"; {_errors(preprocessing)}" if _errors(preprocessing) else ""),
            )
        )
    try:
        backends, notes = gate_engines(row, path)
    except Exception as error:  # an artifact that does not load or validate fails the gate with the reason
        report.checks.append(Check("loads and validates", False, detail=f"{type(error).__name__}: {first_line(error)}"))
        return report
    report.notes.extend(notes)
    report.checks.append(Check("loads and validates", True, detail=", ".join(backend.name for backend in backends)))
    if contract.takes_pixels and inputs.pixels is not None:
        report.checks.append(resize_check(row.model_file(path), inputs.pixels, thresholds.resize_max_lsb))
    try:
        for backend in backends:
            report.backends.append(verify_backend(backend, row.precision, contract, inputs, thresholds))
    finally:
        for backend in backends:
            backend.close()
    return report


def _errors(preprocessing: PreprocessReport) -> str:
    return "; ".join(f"{item.file}: {item.error}" for item in preprocessing.files if item.error)
