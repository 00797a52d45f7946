"""What ``cifar-bench RUN_A RUN_B ...`` does around the measuring (menu.py): check the output folder, measure, write
and show the menu: a rich table on stdout, menu.md, menu.json and menu.png.

menu.png: one-pass accuracy against one-pass throughput, one marker per run and precision (matplotlib, Agg). A run's
fp32 and int8 points are joined by a thin line, so what int8 buys (speed) and costs (accuracy) reads at a glance;
each point is labelled with the run's model name and size.

Exit codes: 0 every run measured; 1 some run's row failed (the others are still measured and written); 5 the
output folder cannot take menu.md, menu.json and menu.png (checked before measuring).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cifar_edge.export.benchmark.artifacts import BenchConfig
from cifar_edge.export.benchmark.machine import describe_machine
from cifar_edge.export.benchmark.measure import BenchResult
from cifar_edge.export.benchmark.menu import SPEED_FIELDS, MenuRow, run_menu
from cifar_edge.export.benchmark.report import table_console
from cifar_edge.export.evaluate.plots import new_figure, plotting_unavailable, save_png
from cifar_edge.runtime.common.atomic_io import atomic_write_text, check_writable, write_error
from cifar_edge.runtime.common.command import ExitCode
from cifar_edge.runtime.common.names import MENU_JSON, MENU_MD, MENU_PNG
from cifar_edge.runtime.model_file import TTA_PASSES


def bench_menu(config: BenchConfig, *, quiet: bool = False, as_json: bool = False) -> int:
    """Measure ``config.run_dirs`` as a menu into ``config.output_dir`` (default: the current folder)."""
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    destination = Path(config.output_dir) if config.output_dir else Path.cwd()
    show_progress = not (quiet or as_json) and errors.is_terminal
    try:
        check_writable(destination, files=[destination / name for name in (MENU_MD, MENU_JSON, MENU_PNG)], create=False)
        with (
            errors.status("benchmarking a menu", spinner="dots")
            if show_progress
            else contextlib.nullcontext() as status
        ):
            result = run_menu(config, step=status.update if status is not None else None)
        written = write_menu(result.report, destination)
    except OSError as error:  # the previous menu files are left as they were (atomic writes)
        hint = "" if config.output_dir else "; choose another folder with --output-dir"
        errors.print(f"cifar-bench: error: {write_error(destination, error)}{hint}", markup=False)
        return ExitCode.WRITE_FAILED
    _print_result(result, written, errors, quiet=quiet, as_json=as_json)
    return result.exit_code


def _print_result(
    result: BenchResult[MenuRow], written: dict[str, str | None], errors: Console, *, quiet: bool, as_json: bool
) -> None:
    """menu.json on stdout, or the table and where it went; then one stderr line per failed run."""
    if as_json:
        print(json.dumps(result.report, ensure_ascii=False, allow_nan=False))
    elif not quiet:
        console = table_console()
        print_menu(result.report, console)
        files = ", ".join(path for key in ("menu_md", "menu_json", "menu_png") if (path := written[key]))
        console.print(f"wrote {files}", markup=False)
        if written["plot_skipped"]:
            console.print(f"plot skipped: {written['plot_skipped']}", markup=False)
    for row in result.rows:
        if row.status == "failed":
            errors.print(f"cifar-bench: {row.run_dir} failed: {row.reason}", markup=False)


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


MARKERS = {"fp32": "o", "int8": "^"}


def _points(row: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """(images/s, accuracy %) by precision, for the precisions the row measured both of."""
    points = {}
    for precision, (rate_field, _latency_field, accuracy_field) in SPEED_FIELDS.items():
        if row[rate_field] is not None and row[accuracy_field] is not None:
            points[precision] = (float(row[rate_field]), float(row[accuracy_field]))
    return points


def plot_menu(report: dict[str, Any], path: str | os.PathLike[str]) -> int:
    """Draw the menu's runs into ``path``; returns how many points were drawn (the file says so when none)."""
    figure = new_figure(7.5, 5.0)
    axes = figure.add_subplot()
    cycle = _colours()
    drawn = 0
    for index, row in enumerate(report["runs"]):
        points = _points(row)
        colour = cycle[index % len(cycle)]
        if len(points) == 2:
            xs, ys = zip(*points.values(), strict=True)
            axes.plot(xs, ys, color=colour, linewidth=0.8, alpha=0.6)
        for precision, (rate, accuracy) in points.items():
            axes.scatter([rate], [accuracy], marker=MARKERS[precision], color=colour, s=45, zorder=3)
            label = f"{row['model'] or row['run_name']} {precision}"
            axes.annotate(label, (rate, accuracy), textcoords="offset points", xytext=(5, 4), fontsize=8)
            drawn += 1
    settings = report["settings"]
    axes.set_xscale("log")
    axes.set_xlabel(f"images/s at batch {settings['batch_size']}, one pass (onnxruntime {settings['provider']})")
    axes.set_ylabel(f"accuracy % at one pass ({settings['data']})")
    for precision, marker in MARKERS.items():
        axes.scatter([], [], marker=marker, color="grey", label=precision)
    axes.legend(loc="best", fontsize=8)
    axes.margins(x=0.2, y=0.1)  # room for the labels right of the outermost points
    axes.grid(True, which="both", alpha=0.3)
    axes.set_title(f"cifar-bench menu: {len(report['runs'])} runs" + ("" if drawn else " (nothing measured)"))
    save_png(figure, path)
    return drawn


def _colours() -> list[str]:
    """matplotlib's default colour cycle: one colour per run, the same for its fp32 and int8 points."""
    from matplotlib import rcParams

    return [entry["color"] for entry in rcParams["axes.prop_cycle"]]
