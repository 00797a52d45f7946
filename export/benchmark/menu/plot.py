"""``menu.png``: one-pass accuracy against one-pass throughput, one marker per run and precision (matplotlib, Agg).

A run's fp32 and int8 points are joined by a thin line, so what int8 buys (speed) and costs (accuracy) reads at a
glance; each point is labelled with the run's model name and size.
"""

from __future__ import annotations

import os
from typing import Any

from cifar_edge.export.benchmark.menu.record import SPEED_FIELDS
from cifar_edge.export.evaluate.plots import new_figure, save_png

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
