"""How ``cifar-bench`` shows and stores its result: a rich table on stdout, ``bench.md`` and ``bench.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cifar_edge.export.benchmark.machine import describe_machine
from cifar_edge.runtime.common.atomic_io import atomic_write_text
from cifar_edge.runtime.common.names import BENCH_JSON, BENCH_MD


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def columns(report: dict[str, Any]) -> list[str]:
    batch = report["settings"]["batch_size"]
    return [
        "format",
        "precision",
        "provider",
        "passes",
        "size MB",
        "accuracy %",
        "agree %",
        "p50 ms b1",
        "p95 ms b1",
        f"img/s b{batch}",
        "MFLOP/img",
        f"GFLOP/s b{batch}",
        "% peak",
        "cold start s",
        "status",
    ]


def row_cells(row: dict[str, Any]) -> list[str]:
    """One table row; a skipped or failed row's reason is listed under the table (see reason_lines)."""
    return [
        row["format"],
        row["precision"],
        row["provider"],
        "-" if row["passes_per_image"] is None else str(row["passes_per_image"]),
        _number(row["size_mb"], 3),
        _number(row["accuracy"], 2),
        _number(row["agreement"], 2),
        _number(row["latency_p50_ms"], 3),
        _number(row["latency_p95_ms"], 3),
        _number(row["throughput_ips"], 0),
        _number(row["mflop_per_image"], 2),
        _number(row["gflops"], 2),
        _number(row["percent_of_peak"], 1),
        _number(row["cold_start_s"], 2),
        row["status"],
    ]


def reason_lines(report: dict[str, Any]) -> list[str]:
    """Why rows were skipped or failed, one line per distinct reason naming its rows."""
    by_reason: dict[tuple[str, str], list[str]] = {}
    for row in report["rows"]:
        if row["status"] != "ok":
            name = f"{row['format']} {row['precision']} {row['provider']}"
            by_reason.setdefault((row["status"], row["reason"] or ""), []).append(name)
    return [f"{status}: {', '.join(names)}: {reason}" for (status, reason), names in by_reason.items()]


def peak_line(peak: dict[str, Any]) -> str:
    """How the "% peak" column's denominators were measured, in one line."""
    shape = peak["shape"]
    conv = f"{shape['channels']}->{shape['channels']} ch {shape['kernel']}x{shape['kernel']} on {shape['size']}x"
    conv += f"{shape['size']}, batch {shape['batch']}"
    parts = []
    for name, unit in (("fp32", "GFLOP/s"), ("int8", "GOP/s")):
        measured = peak[name]
        value = f"{measured['gflops']:,.1f} {unit}" if measured["gflops"] is not None else measured["reason"]
        parts.append(f"{name} {value} ({measured['op']})")
    threads = f"{peak['threads']} thread" + ("" if peak["threads"] == 1 else "s")
    return f"machine peak (onnxruntime, {conv}, {threads}): {'; '.join(parts)}; % peak: CPU rows only"


def header_lines(report: dict[str, Any]) -> list[str]:
    data, settings = report["data"], report["settings"]
    where = data.get("class_folder") or data.get("data") or data.get("split") or data.get("source")
    mode = "quick smoke run (few images and repeats: rough numbers)" if settings["quick"] else "full run"
    return [
        *describe_machine(report["machine"]),
        f"run: {report['run_dir']}; eval images: {data['images']} ({data.get('source')}: {where}); {mode}",
        f"timing: {settings['timing']}",
        peak_line(report["machine_peak"]),
    ]


def target_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for target in report["targets"]:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        measured = "-" if target["measured"] is None else f"{target['measured']:.2f}{target['unit']}"
        needed = f"{target['relation']} {target['threshold']:g}{target['unit']}"
        lines.append(f"{target['name']}: {measured} (target {needed}) {verdict}")
    return lines


def note_lines(report: dict[str, Any]) -> list[str]:
    seen: dict[str, None] = {}
    for row in report["rows"]:
        for note in row["notes"]:
            seen.setdefault(f"{row['format']} {row['precision']}: {note}")
    return list(seen)


def print_report(report: dict[str, Any], console: Console) -> None:
    for line in header_lines(report):
        console.print(line, markup=False)
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for name in columns(report):
        table.add_column(name, justify="left" if name in ("format", "precision", "provider", "status") else "right")
    for row in report["rows"]:
        table.add_row(*(escape(cell) for cell in row_cells(row)))
    console.print(table)
    for line in reason_lines(report):
        console.print(line, markup=False)
    for line in target_lines(report):
        console.print("target: " + line, markup=False)
    for line in note_lines(report):
        console.print("note: " + line, markup=False)


def markdown(report: dict[str, Any]) -> str:
    names = columns(report)
    lines = [f"# cifar-bench: {report['run_name']}", "", f"Measured {report['created_at']}.", ""]
    lines += [f"- {line}" for line in header_lines(report)]
    lines += ["", "| " + " | ".join(names) + " |", "|" + "|".join("---" for _ in names) + "|"]
    for row in report["rows"]:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row_cells(row)) + " |")
    reasons = reason_lines(report)
    if reasons:
        lines += [""] + [f"- {line}" for line in reasons]
    lines += ["", "## Targets", ""] + [f"- {line}" for line in target_lines(report)]
    notes = note_lines(report)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {line}" for line in notes]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], output_dir: Path) -> dict[str, str]:
    """Write bench.md and bench.json into ``output_dir``; returns their paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"bench_md": str(output_dir / BENCH_MD), "bench_json": str(output_dir / BENCH_JSON)}
    report["files"] = paths
    atomic_write_text(output_dir / BENCH_JSON, json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    atomic_write_text(output_dir / BENCH_MD, markdown(report))
    return paths


def table_console() -> Console:
    """The stdout console for a results table: piped or redirected, it never wraps or truncates the table."""
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = 1000
    return console
