"""What an export returns (each artifact's result, and the run's with its exit code) and how it is shown: progress
on stderr while it runs, then one small table per artifact and the failed checks by how much."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cifar_edge.export.gate.parity import VALIDATION, ParityReport
from cifar_edge.runtime.common.command import ExitCode


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


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "-"
    return f"{size_bytes / 1024:,.1f} KiB" if size_bytes < 1024**2 else f"{size_bytes / 1024**2:,.2f} MiB"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def artifact_table(artifact: ArtifactResult) -> Table:
    if artifact.error:
        status = "[red]EXPORT FAILED[/]"
    elif not artifact.written:
        status = "[red]PARITY FAILED, not written[/]"
    elif artifact.report is None:
        status = "[yellow]written, NOT verified[/]"
    else:
        status = "[green]passed[/]"
    title = f"{artifact.path.name}  {artifact.format} {artifact.precision}  {_size(artifact.size_bytes)}  {status}"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in ("backend", "inputs", "n", "max |Δ|", "mean |Δ|", "top-1", "acc torch", "acc export"):
        table.add_column(column, justify="left" if column in ("backend", "inputs") else "right", no_wrap=True)
    if artifact.report is not None:
        for backend in artifact.report.backends:
            for comparison in backend.comparisons:
                table.add_row(
                    backend.backend,
                    "real" if comparison.name == VALIDATION else comparison.name,
                    str(comparison.inputs),
                    f"{comparison.max_abs_diff:.1e}",
                    f"{comparison.mean_abs_diff:.1e}",
                    _percent(100 * comparison.top1_agreement),
                    _percent(comparison.reference_accuracy),
                    _percent(comparison.artifact_accuracy),
                )
    return table


def print_result(result: ExportResult, console: Console) -> None:
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    for artifact in result.artifacts:
        if artifact.error:
            console.print(f"[red]error:[/] {artifact.error}", highlight=False)
            continue
        console.print(artifact_table(artifact))
        report = artifact.report
        if report is None:
            continue
        for note in report.notes:
            console.print(f"  [yellow]note:[/] {note}", highlight=False)
        checks = report.all_checks()
        passed = sum(check.passed for _, check in checks)
        console.print(f"  {passed}/{len(checks)} checks passed", highlight=False)
        for failure in report.failures():
            console.print(f"  [red]✗[/] {failure}", highlight=False)
        if artifact.parity_path:
            console.print(f"  parity report: {artifact.parity_path}", highlight=False)


class ExportProgress:
    """Steps of an export (export, convert, verify ...), each shown with a spinner while it runs."""

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None

    def __enter__(self) -> ExportProgress:
        if self.enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(bar_width=20),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    @contextlib.contextmanager
    def step(self, description: str) -> Iterator[None]:
        if self._progress is None:
            yield
            return
        task = self._progress.add_task(description, total=1)
        try:
            yield
        finally:
            self._progress.update(task, completed=1)

    def note(self, message: str) -> None:
        if self.enabled:
            self.console.print(f"[yellow]note:[/] {message}", highlight=False)
