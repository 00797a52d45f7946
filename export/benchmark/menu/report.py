"""How ``cifar-bench``'s menu shows and stores its result: a rich table on stdout, menu.md, menu.json, menu.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cifar_edge.export.benchmark.machine import describe_machine
from cifar_edge.runtime.common.atomic_io import atomic_write_text
from cifar_edge.runtime.common.names import MENU_JSON, MENU_MD, MENU_PNG
from cifar_edge.runtime.passes import TTA_PASSES

LEFT_ALIGNED = ("run", "model", "status")


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def columns(report: dict[str, Any]) -> list[str]:
    batch = report["settings"]["batch_size"]
    return [
        "run",
        "model",
        "params",
        "MFLOP/img 1 pass",
        "acc % 1 pass",
        f"acc % flip ({TTA_PASSES['flip']} passes)",
        f"acc % flip_shift ({TTA_PASSES['flip_shift']} passes)",
        "int8 acc % 1 pass",
        f"fp32 img/s b{batch} 1 pass",
        "fp32 ms b1 1 pass",
        f"int8 img/s b{batch} 1 pass",
        "int8 ms b1 1 pass",
        "status",
    ]


def row_cells(row: dict[str, Any]) -> list[str]:
    """One table row; a failed row's reason is listed under the table."""
    return [
        row["run_name"],
        row["model"] or "-",
        "-" if row["parameters"] is None else f"{row['parameters']:,}",
        _number(row["mflop_per_image"], 2),
        _number(row["accuracy_1pass"], 2),
        _number(row["accuracy_flip"], 2),
        _number(row["accuracy_flip_shift"], 2),
        _number(row["int8_accuracy_1pass"], 2),
        _number(row["fp32_images_per_second"], 0),
        _number(row["fp32_latency_ms"], 3),
        _number(row["int8_images_per_second"], 0),
        _number(row["int8_latency_ms"], 3),
        row["status"],
    ]


def header_lines(report: dict[str, Any]) -> list[str]:
    settings = report["settings"]
    images = f"at most {settings['images']}" if settings["images"] else "all"
    mode = "quick smoke run (few images and repeats: rough numbers)" if settings["quick"] else "full run"
    return [
        *describe_machine(report["machine"]),
        f"eval images: {settings['data']} ({images} images per run); {mode}",
        f"speed: one pass per image (no TTA), onnxruntime {settings['provider'].upper()}, "
        f"img/s at batch {settings['batch_size']}, ms at batch 1 (median); {settings['timing']}",
        "accuracy: % top-1 on the eval images; 1 pass: the fp32 and int8 ONNX files; flip and flip_shift: the "
        "run's PyTorch model with that TTA",
    ]


def reason_lines(report: dict[str, Any]) -> list[str]:
    return [f"failed: {row['run_name']}: {row['reason']}" for row in report["runs"] if row["status"] == "failed"]


def note_lines(report: dict[str, Any]) -> list[str]:
    return [f"{row['run_name']}: {note}" for row in report["runs"] for note in row["notes"]]


def print_menu(report: dict[str, Any], console: Console) -> None:
    for line in header_lines(report):
        console.print(line, markup=False)
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for name in columns(report):
        table.add_column(name, justify="left" if name in LEFT_ALIGNED else "right")
    for row in report["runs"]:
        table.add_row(*(escape(cell) for cell in row_cells(row)))
    console.print(table)
    for line in reason_lines(report):
        console.print(line, markup=False)
    for line in note_lines(report):
        console.print("note: " + line, markup=False)


def markdown(report: dict[str, Any]) -> str:
    names = columns(report)
    lines = [f"# cifar-bench menu: {len(report['runs'])} runs", "", f"Measured {report['created_at']}.", ""]
    lines += [f"- {line}" for line in header_lines(report)]
    lines += ["", "| " + " | ".join(names) + " |", "|" + "|".join("---" for _ in names) + "|"]
    for row in report["runs"]:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row_cells(row)) + " |")
    reasons = reason_lines(report)
    if reasons:
        lines += [""] + [f"- {line}" for line in reasons]
    notes = note_lines(report)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {line}" for line in notes]
    return "\n".join(lines) + "\n"


def write_menu(report: dict[str, Any], output_dir: Path) -> dict[str, str | None]:
    """Write menu.png (when matplotlib is there), menu.json and menu.md into ``output_dir``; report["files"]."""
    from cifar_edge.export.benchmark.menu.plot import plot_menu
    from cifar_edge.export.evaluate.plots import plotting_unavailable

    output_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | None] = {
        "menu_md": str(output_dir / MENU_MD),
        "menu_json": str(output_dir / MENU_JSON),
        "menu_png": None,
        "plot_skipped": plotting_unavailable(),
    }
    if files["plot_skipped"] is None:
        plot_menu(report, output_dir / MENU_PNG)
        files["menu_png"] = str(output_dir / MENU_PNG)
    report["files"] = files
    atomic_write_text(output_dir / MENU_JSON, json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    atomic_write_text(output_dir / MENU_MD, markdown(report))
    return files
