"""Human-readable summary of an export: one small table per artifact, then failed checks by how much."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from cifar_edge.export.gate.parity import VALIDATION
from cifar_edge.export.results import ArtifactResult, ExportResult


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
