"""The artifacts ``cifar-bench`` measures: found in the run folder, or exported there through ``export_run``.

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

from cifar_edge.export.config import ExportConfig
from cifar_edge.export.errors import ExportError
from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.common.names import ARTIFACT_FILES, PARITY_SUFFIX, WEIGHTS_FILE
from cifar_edge.runtime.contract import PROVENANCE_METADATA_KEY


@dataclass(frozen=True)
class Variant:
    """One row family of the table: a format at a precision."""

    key: str  # what --formats takes
    label: str  # the table's "format" column
    precision: str
    engine: str  # "pytorch", "torchscript" or "onnx": how it is loaded and timed
    export_format: str | None = None  # cifar-export's --format; None: the run's own weights (no export)

    @property
    def file_name(self) -> str:
        if self.export_format is None:
            return WEIGHTS_FILE
        return ARTIFACT_FILES[(self.export_format, self.precision)]


VARIANTS: dict[str, Variant] = {
    variant.key: variant
    for variant in (
        Variant("pytorch", "PyTorch", "fp32", "pytorch"),
        Variant("torchscript", "TorchScript", "fp32", "torchscript", "torchscript"),
        Variant("onnx-fp32", "ONNX", "fp32", "onnx", "onnx"),
        Variant("onnx-fp16", "ONNX", "fp16", "onnx", "onnx"),
        Variant("onnx-int8", "ONNX", "int8", "onnx", "onnx"),
    )
}


@dataclass
class Artifact:
    variant: Variant
    path: Path
    exported: bool = False  # written by this benchmark (it was missing or stale)
    error: str | None = None  # could not be exported: the rows are marked failed with this reason
    notes: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.error is None and self.path.is_file()


def artifact_provenance(path: Path, engine: str) -> dict[str, Any] | None:
    """The provenance an exported artifact carries (None when it carries none or cannot be read)."""
    try:
        if engine == "onnx":
            import onnx

            model = onnx.load(str(path), load_external_data=False)
            text: str | bytes | None = next(
                (prop.value for prop in model.metadata_props if prop.key == PROVENANCE_METADATA_KEY), None
            )
        else:
            from cifar_edge.export.formats.torchscript import load_torchscript

            text = load_torchscript(path, (PROVENANCE_METADATA_KEY,))[1].get(PROVENANCE_METADATA_KEY)
        provenance = json.loads(text) if text else None
    except Exception:  # unreadable: callers treat it as stale, an export replaces it (through the gate)
        return None
    return provenance if isinstance(provenance, dict) else None


def source_weights_sha256(path: Path, engine: str) -> str | None:
    """The run weights' sha256 an exported artifact records in its provenance (None when it records none)."""
    source = (artifact_provenance(path, engine) or {}).get("source")
    return source.get("weights_sha256") if isinstance(source, dict) else None


def _stale_reason(artifact: Artifact, weights_sha256: str, tta: str | None) -> str | None:
    """Why an existing artifact cannot be reused (None: it can): other weights, or another TTA than asked for."""
    provenance = artifact_provenance(artifact.path, artifact.variant.engine) or {}
    source = provenance.get("source")
    if not isinstance(source, dict) or source.get("weights_sha256") != weights_sha256:
        return "re-exported (the existing file came from other weights)"
    if tta is not None and (provenance.get("tta") or "none") != tta:
        return f"re-exported (the existing file has TTA {provenance.get('tta')!r}, not {tta!r})"
    return None


def _export_config(
    variant: Variant, formats: tuple[str, ...], data: Path | None, quick: bool, tta: str | None, output: Path | None
) -> ExportConfig:
    sizes: dict[str, Any] = {"verify_images": 200, "calibration_images": 100} if quick else {}
    precision = {"dtype": "fp16"} if variant.precision == "fp16" else {}
    if variant.precision == "int8":
        precision = {"quantize": "int8"}
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
        if variant.export_format is None:
            continue
        if not artifact.path.is_file():
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
        _export_group(run_dir, _export_config(group[0], _formats(group), data, quick, tta, folder), group_artifacts)
    return artifacts


def _formats(group: list[Variant]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(variant.export_format for variant in group if variant.export_format))


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
