"""How ``cifar-bench`` judges, shows and stores its result: the project's targets checked on the rows, a rich table
on stdout, ``bench.md`` and ``bench.json``.

Targets (docs/evaluation.md, "Targets"): every target is a ratio of two CPU rows measured in the same run, on the
same machine, with the same threads; a target whose rows are missing (not asked for, skipped or failed) is reported
as not measured, never as met.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cifar_edge.export.benchmark.artifacts import FP32_ONNX, INT8_ONNX, PYTORCH
from cifar_edge.export.benchmark.machine import describe_machine
from cifar_edge.export.config import Thresholds
from cifar_edge.runtime.common.atomic_io import atomic_write_text
from cifar_edge.runtime.common.names import BENCH_JSON, BENCH_MD

# int8 ONNX vs fp32 ONNX throughput at batch 256 (what static QDQ int8 achieved: docs/history.md, 'int8').
INT8_SPEEDUP = 2.0
# int8 ONNX accuracy may be at most this many percentage points below eager PyTorch: the export gate's own limit.
INT8_MAX_ACCURACY_DROP_PP = Thresholds().int8_max_accuracy_drop_pp
# fp32 ONNX vs eager PyTorch throughput at batch 256.
ONNX_SPEEDUP = 2.0
# Eager PyTorch cold start / ONNX (runtime) cold start.
COLD_START_RATIO = 5.0

_RELATIONS = {
    ">=": lambda measured, threshold: measured >= threshold,
    "<=": lambda measured, threshold: measured <= threshold,
    "<": lambda measured, threshold: measured < threshold,
}


def _cpu_row(rows: list[Any], variant: str) -> Any | None:
    return next((row for row in rows if row.variant == variant and row.provider == "cpu" and row.status == "ok"), None)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _target(name: str, measured: float | None, relation: str, threshold: float, *, unit: str, detail: str) -> dict:
    met = None if measured is None else bool(_RELATIONS[relation](measured, threshold))
    return {
        "name": name,
        "measured": None if measured is None else round(measured, 4),
        "relation": relation,
        "threshold": threshold,
        "unit": unit,
        "met": met,
        "detail": detail if measured is not None else "not measured: " + detail,
    }


def evaluate_targets(rows: list[Any]) -> list[dict[str, Any]]:
    """The five target checks (``met`` is True, False, or None when a needed row is missing)."""
    eager, fp32, int8 = _cpu_row(rows, PYTORCH.key), _cpu_row(rows, FP32_ONNX.key), _cpu_row(rows, INT8_ONNX.key)

    def value(row: Any | None, name: str) -> float | None:
        return getattr(row, name) if row is not None else None

    int8_speedup = _ratio(value(int8, "throughput_ips"), value(fp32, "throughput_ips"))
    drop = None
    if value(eager, "accuracy") is not None and value(int8, "accuracy") is not None:
        drop = eager.accuracy - int8.accuracy
    onnx_speedup = _ratio(value(fp32, "throughput_ips"), value(eager, "throughput_ips"))
    latency_ratio = _ratio(value(fp32, "latency_p50_ms"), value(eager, "latency_p50_ms"))
    cold_ratio = _ratio(value(eager, "cold_start_s"), value(fp32, "cold_start_s"))
    return [
        _target(
            "int8 ONNX throughput vs fp32 ONNX (CPU, batch 256)",
            int8_speedup,
            ">=",
            INT8_SPEEDUP,
            unit="x",
            detail="needs the onnx-int8 and onnx-fp32 CPU rows",
        ),
        _target(
            "int8 ONNX accuracy drop vs PyTorch (CPU)",
            drop,
            "<=",
            INT8_MAX_ACCURACY_DROP_PP,
            unit="pp",
            detail="needs the onnx-int8 and pytorch CPU rows",
        ),
        _target(
            "fp32 ONNX throughput vs PyTorch eager (CPU, batch 256)",
            onnx_speedup,
            ">=",
            ONNX_SPEEDUP,
            unit="x",
            detail="needs the onnx-fp32 and pytorch CPU rows",
        ),
        _target(
            "fp32 ONNX latency p50 / PyTorch eager p50 (CPU, batch 1)",
            latency_ratio,
            "<",
            1.0,
            unit="x",
            detail="needs the onnx-fp32 and pytorch CPU rows",
        ),
        _target(
            "PyTorch eager cold start / ONNX cold start",
            cold_ratio,
            ">=",
            COLD_START_RATIO,
            unit="x",
            detail="needs cold starts of the onnx-fp32 and pytorch CPU rows",
        ),
    ]


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
