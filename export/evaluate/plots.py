"""``confusion.png`` (annotated heatmap) and ``misclassified.png`` (montage) for ``cifar-eval``.

matplotlib is in the ``[train]`` extra, not the base install: it is imported inside the functions, through its
object-oriented API (``Figure`` + the Agg canvas; no pyplot, no global backend switch), so evaluating an ONNX model
works without it and only the plots are skipped (:func:`plotting_unavailable` says why).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from cifar_edge.runtime.common.atomic_io import atomic_path

# Montage: the most confident mistakes first, at most this many (a 5 x 5 grid at 10 classes is readable).
MONTAGE_IMAGES = 25
# Cells get their count written in them up to this many classes; beyond, only colours (text would not fit).
ANNOTATE_UP_TO_CLASSES = 25


def plotting_unavailable() -> str | None:
    """None when matplotlib can be imported, else a one-line reason."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        return f"matplotlib is not installed ({error}); pip install 'cifar-edge[train]' or matplotlib"
    return None


def new_figure(width: float, height: float) -> Any:
    """A Figure of ``width`` x ``height`` inches, outside pyplot (no global state; cifar-bench's menu plot too)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def save_png(figure: Any, path: str | os.PathLike[str]) -> None:
    """Render ``figure`` on the Agg canvas into ``path`` atomically (the previous file stays until it is done)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    with atomic_path(path) as temp_path:
        figure.savefig(temp_path, format="png")


def plot_confusion(
    matrix: np.ndarray | list[list[int]], class_names: list[str] | tuple[str, ...], path: str | os.PathLike[str]
) -> None:
    """Rows: true class, columns: predicted class. Colour: share of the true class; text: image count."""
    counts = np.asarray(matrix, dtype=np.int64)
    classes = len(class_names)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)
    side = max(4.0, 0.6 * classes + 2.5)
    figure = new_figure(side + 1.0, side)
    axes = figure.add_subplot()
    heatmap = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(heatmap, ax=axes, shrink=0.8, label="share of the true class")
    axes.set_xticks(range(classes), labels=class_names, rotation=45, ha="right", rotation_mode="anchor")
    axes.set_yticks(range(classes), labels=class_names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    correct, total = int(np.trace(counts)), int(counts.sum())
    accuracy = f"{100.0 * correct / total:.2f}%" if total else "n/a"
    axes.set_title(f"Confusion matrix ({total} images, top-1 {accuracy})")
    if classes <= ANNOTATE_UP_TO_CLASSES:
        for row in range(classes):
            for column in range(classes):
                if counts[row, column] or row == column:
                    colour = "white" if shares[row, column] > 0.5 else "black"
                    axes.text(column, row, str(counts[row, column]), ha="center", va="center", color=colour, fontsize=8)
    save_png(figure, path)


def plot_misclassified(
    mistakes: list[dict[str, Any]], image: Callable[[int], np.ndarray], path: str | os.PathLike[str]
) -> int:
    """A grid of the first MONTAGE_IMAGES ``mistakes`` (eval.json's list); returns how many were drawn.

    ``image(index)`` gives the uint8 (H, W, 3) picture of data-set position ``index``. With no mistakes the file
    still exists and says so.
    """
    shown = []
    for mistake in mistakes:
        if len(shown) == MONTAGE_IMAGES:
            break
        try:
            shown.append((mistake, image(int(mistake["index"]))))
        except Exception:  # a file that changed since evaluation: leave it out of the picture
            continue
    if not shown:
        figure = new_figure(4.0, 1.5)
        figure.text(0.5, 0.5, "No misclassified images", ha="center", va="center", fontsize=12)
        save_png(figure, path)
        return 0
    columns = min(5, len(shown))
    rows = (len(shown) + columns - 1) // columns
    figure = new_figure(2.2 * columns, 2.5 * rows + 0.4)
    figure.suptitle("Most confident mistakes (true / predicted, confidence)")
    for position, (mistake, pixels) in enumerate(shown):
        axes = figure.add_subplot(rows, columns, position + 1)
        axes.imshow(pixels, interpolation="nearest")
        axes.set_axis_off()
        axes.set_title(
            f"true: {mistake['true']}\npred: {mistake['predicted']} {mistake['confidence']:.2f}",
            fontsize=8,
            color="darkred",
        )
    save_png(figure, path)
    return len(shown)
