"""What an export returns: the planned artifacts, each one's result, and the run's (with its exit code)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifar_edge.export.gate.parity import ParityReport
from cifar_edge.runtime.common.command import ExitCode


@dataclass(frozen=True)
class Target:
    format: str
    precision: str
    path: Path


@dataclass
class ArtifactResult:
    format: str
    precision: str
    path: Path
    written: bool
    report: ParityReport | None  # None when verification was skipped (--no-verify)
    parity_path: Path | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    seconds: float = 0.0
    error: str | None = None  # the exporter/converter failed (ExitCode.TOOL_FAILED); nothing was written

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "precision": self.precision,
            "path": str(self.path),
            "written": self.written,
            "verified": self.report is not None,
            "passed": self.report.passed if self.report is not None else None,
            "failures": self.report.failures() if self.report is not None else [],
            "parity_path": str(self.parity_path) if self.parity_path else None,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "parity": self.report.to_dict() if self.report is not None else None,
        }


@dataclass
class ExportResult:
    run_dir: Path
    artifacts: list[ArtifactResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(artifact.written for artifact in self.artifacts)

    @property
    def exit_code(self) -> int:
        """TOOL_FAILED when an exporter failed, else FAILED when a parity gate failed, else OK."""
        if any(artifact.error for artifact in self.artifacts):
            return ExitCode.TOOL_FAILED
        return ExitCode.OK if self.ok else ExitCode.FAILED

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "exit_code": self.exit_code,
            "run_dir": str(self.run_dir),
            "notes": self.notes,
            "artifacts": [artifact.to_dict() for artifact in self.artifacts],
        }
