"""What ``cifar-bench`` measures: the invocation (BenchConfig), its row families (Variant: eager PyTorch and every
row of the format table), and their artifacts, found in the run folder or exported there through ``export_run``.

An artifact is reused when it exists under cifar-export's default name and was exported from the run's current
weights (the sha256 in its provenance); a missing or stale one is exported with the export package's own library
function, parity gate included, so the benchmark never measures a file that does not compute what the run's model
computes. A failed export (gate or exporter) is reported on that artifact's rows; the other rows still run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifar_edge.export.benchmark.timing import FULL, QUICK, Repeats
from cifar_edge.export.config import ExportConfig, ExportError
from cifar_edge.export.engines import Engine
from cifar_edge.export.formats import FP32, ONNX, ROWS, ArtifactFormat, row_of
from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.common.names import PARITY_SUFFIX, WEIGHTS_FILE
from cifar_edge.runtime.contract import PROVENANCE_METADATA_KEY


@dataclass(frozen=True)
class Variant:
    """One row family of the table: a format at a precision (a row of the format table), or the run's own weights."""

    key: str  # what --formats takes
    label: str  # the table's "format" column
    precision: str
    artifact: ArtifactFormat | None = None  # None: the run's own weights, run by eager PyTorch (never exported)

    @property
    def file_name(self) -> str:
        return WEIGHTS_FILE if self.artifact is None else self.artifact.file_name

    @property
    def needs_torch(self) -> bool:
        return self.artifact is None or self.artifact.needs_torch


PYTORCH = Variant("pytorch", "PyTorch", FP32)
# Eager PyTorch, then the format table's rows (the torch formats first, beside it).
VARIANTS: dict[str, Variant] = {
    variant.key: variant
    for variant in (
        PYTORCH,
        *(
            Variant(row.bench_key, row.label, row.precision, row)
            for row in sorted(ROWS, key=lambda row: not row.needs_torch)
        ),
    )
}
# What cifar-bench measures unless --formats says: every variant but the folder artifacts (a Triton repository holds
# the fp32 ONNX file, which onnx-fp32 already measures; --formats triton measures it).
DEFAULT_VARIANTS: tuple[str, ...] = tuple(
    key for key, variant in VARIANTS.items() if variant.artifact is None or not variant.artifact.is_folder
)
FP32_ONNX = VARIANTS[row_of(ONNX).bench_key]
INT8_ONNX = VARIANTS[row_of(ONNX, "int8").bench_key]

PROVIDERS = ("cpu", "cuda")
# Eval images when --quick (a smoke run); a full run uses every eval image.
QUICK_IMAGES = 64
# What a menu (several run folders) times for each run: one pass per image, fp32 and int8 ONNX on the CPU.
MENU_VARIANTS = (FP32_ONNX.key, INT8_ONNX.key)
MENU_PROVIDER = "cpu"


@dataclass(frozen=True)
class BenchConfig:
    """One ``cifar-bench`` invocation. Defaults are what ``cifar-bench`` does with no options."""

    # Run folder; None: the latest run (runs/latest).
    run_dir: Path | None = None
    # Several run folders: measured as a menu (menu.md, menu.json, menu.png) instead of one run's table.
    run_dirs: tuple[Path, ...] = ()
    # Providers to measure on; a provider that is not really active gives skipped rows that say why.
    providers: tuple[str, ...] = PROVIDERS
    # Variants (rows) to measure: keys of VARIANTS.
    formats: tuple[str, ...] = DEFAULT_VARIANTS
    # Eval images: None = the run's validation split; "cifar10" = the official test split; or an image folder.
    data: str | None = None
    # Where CIFAR-10 lives (for data="cifar10" and runs trained on it).
    data_root: str | None = None
    # Where bench.md and bench.json go; None: the run folder (a menu: the current folder).
    output_dir: Path | None = None
    # Threads for torch and onnxruntime alike; None: the runtime's default (all usable cores).
    threads: int | None = None
    # Batch size of the throughput column (and of the accuracy pass).
    batch_size: int = 256
    # Cap on eval images (class-stratified); None: all (--quick: QUICK_IMAGES).
    images: int | None = None
    # Small smoke run: few images, few repeats, smaller export verification.
    quick: bool = False
    # Measure the cold start of fresh processes (several seconds per torch row).
    cold_start: bool = True

    @property
    def repeats(self) -> Repeats:
        return QUICK if self.quick else FULL


@dataclass
class Artifact:
    variant: Variant
    path: Path
    exported: bool = False  # written by this benchmark (it was missing or stale)
    error: str | None = None  # could not be exported: the rows are marked failed with this reason
    notes: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.error is None and self.model_file.is_file()

    @property
    def model_file(self) -> Path:
        """The file that holds the model (inside a folder artifact such as a Triton repository: its model file)."""
        row = self.variant.artifact
        try:
            return row.model_file(self.path) if row is not None else self.path
        except (OSError, ValueError):  # a folder that is not (or no longer) such an artifact
            return self.path / "missing"


def artifact_provenance(path: Path, variant: Variant) -> dict[str, Any] | None:
    """The provenance an exported artifact carries, read through its row's opener (None when it carries none or
    cannot be opened)."""
    if variant.artifact is None:
        return None
    try:
        engine = variant.artifact.open(path)
    except Exception:  # unreadable: callers treat it as stale, an export replaces it (through the gate)
        return None
    try:
        return engine_provenance(engine)
    finally:
        engine.close()


def engine_provenance(engine: Engine) -> dict[str, Any] | None:
    """The provenance an open engine's file carries (None when it carries none or it is not a JSON object)."""
    try:
        text = engine.metadata.get(PROVENANCE_METADATA_KEY)
        provenance = json.loads(text) if text else None
    except ValueError:
        return None
    return provenance if isinstance(provenance, dict) else None


def source_weights_sha256(path: Path, variant: Variant) -> str | None:
    """The run weights' sha256 an exported artifact records in its provenance (None when it records none)."""
    source = (artifact_provenance(path, variant) or {}).get("source")
    return source.get("weights_sha256") if isinstance(source, dict) else None


def _stale_reason(artifact: Artifact, weights_sha256: str, tta: str | None) -> str | None:
    """Why an existing artifact cannot be reused (None: it can): other weights, or another TTA than asked for."""
    provenance = artifact_provenance(artifact.path, artifact.variant) or {}
    source = provenance.get("source")
    if not isinstance(source, dict) or source.get("weights_sha256") != weights_sha256:
        return "re-exported (the existing file came from other weights)"
    if tta is not None and (provenance.get("tta") or "none") != tta:
        return f"re-exported (the existing file has TTA {provenance.get('tta')!r}, not {tta!r})"
    return None


def _export_config(
    group: list[Variant], *, data: Path | None, quick: bool, tta: str | None, output: Path | None
) -> ExportConfig:
    """One export of a precision's variants (they share the options that select it: the table's ``selected_by``)."""
    sizes: dict[str, Any] = {"verify_images": 200, "calibration_images": 100} if quick else {}
    artifacts = [variant.artifact for variant in group if variant.artifact is not None]
    formats = tuple(dict.fromkeys(artifact.format for artifact in artifacts))
    precision = dict(artifacts[0].selected_by)
    return ExportConfig(formats=formats, data=data, tta=tta, output=output, **precision, **sizes)


def ensure_artifacts(
    run_dir: Path,
    weights_sha256: str,
    variants: list[Variant],
    *,
    data: Path | None,
    quick: bool,
    step: Callable[[str], Any] | None = None,
    tta: str | None = None,
    folder: Path | None = None,
) -> dict[str, Artifact]:
    """Each variant's artifact, exporting the missing and stale ones (grouped by precision, one export each).

    ``tta``: the TTA the artifacts must have (None: the run's own, and any existing file from the current weights
    is reused); ``folder``: where they live under cifar-export's default names (None: the run folder).
    """
    artifacts: dict[str, Artifact] = {}
    to_export: dict[str, list[Variant]] = {}
    for variant in variants:
        artifact = Artifact(variant, (folder or run_dir) / variant.file_name)
        artifacts[variant.key] = artifact
        if variant.artifact is None:
            continue
        if not artifact.model_file.is_file():
            artifact.notes.append("exported now (was missing)")
        elif (stale := _stale_reason(artifact, weights_sha256, tta)) is not None:
            artifact.notes.append(stale)
        else:
            if not artifact.path.with_name(artifact.path.name + PARITY_SUFFIX).is_file():
                artifact.notes.append(f"existing file, never verified (no {artifact.path.name}{PARITY_SUFFIX})")
            continue
        to_export.setdefault(variant.precision, []).append(variant)
    for group in to_export.values():
        group_artifacts = [artifacts[variant.key] for variant in group]
        if step is not None:
            step(f"exporting {', '.join(artifact.path.name for artifact in group_artifacts)} (with the parity gate)")
        config = _export_config(group, data=data, quick=quick, tta=tta, output=folder)
        _export_group(run_dir, config, group_artifacts)
    return artifacts


def _export_group(run_dir: Path, config: ExportConfig, group: list[Artifact]) -> None:
    """Export one precision's artifacts through ``export_run``; each gets its error or is marked exported."""
    from cifar_edge.export.pipeline import export_run

    try:
        if config.output is not None:  # export_run writes into an existing folder under the default names
            Path(config.output).mkdir(parents=True, exist_ok=True)
        result = export_run(run_dir, config)
    except (ExportError, OSError) as error:
        for artifact in group:
            artifact.error = f"export failed: {first_line(error)}"
        return
    by_path = {artifact_result.path.name: artifact_result for artifact_result in result.artifacts}
    for artifact in group:
        outcome = by_path.get(artifact.path.name)
        if outcome is None:
            artifact.error = "export wrote no such artifact"
        elif outcome.error:
            artifact.error = f"export failed: {outcome.error}"
        elif not outcome.written:
            failures = "; ".join(outcome.report.failures()) if outcome.report else "not written"
            artifact.error = f"failed the parity gate: {failures}"
        else:
            artifact.exported = True
