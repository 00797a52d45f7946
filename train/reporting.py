"""What a training run shows and leaves behind: progress bars, per-epoch lines, metrics.csv and curves.png."""

from __future__ import annotations

import contextlib
import csv
import io
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from cifar_edge.runtime.common.atomic_io import atomic_path, atomic_write_text

# curves.png is redrawn after an epoch only when this much time passed since the last drawing (each costs time), and
# always at the end, on Ctrl-C and on failure: long runs get a live plot, tiny runs do not pay for one per epoch.
CURVES_REFRESH_S = 10.0

METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_tta_accuracy",
    "val_flip_accuracy",
    "val_flip_shift_accuracy",
    "lr",
    "seconds",
    "train_seconds",
    "train_images_per_second",
    "elapsed_seconds",
)


class _ImagesPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("  ... img/s" if speed is None else f"{speed:7.0f} img/s", style="progress.data.speed")


class _NoProgress:
    def advance(self, images: int) -> None:
        pass


class _EpochProgress:
    def __init__(self, progress: Progress, task_id: Any) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, images: int) -> None:
        self._progress.advance(self._task_id, images)


class Reporter:
    """Human-facing output. Quiet: nothing but errors. Progress bars only on a terminal (they are transient)."""

    def __init__(self, quiet: bool = False, console: Console | None = None, progress_console: Console | None = None):
        self.quiet = quiet
        self.console = console or Console(highlight=False)
        self.progress_console = progress_console or Console(stderr=True)

    def line(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def epoch_progress(self, description: str, total_images: int, done_images: int = 0) -> Iterator[Any]:
        if self.quiet or not self.progress_console.is_terminal:
            yield _NoProgress()
            return
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _ImagesPerSecond(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.progress_console,
            transient=True,
        )
        with progress:
            task_id = progress.add_task(description, total=total_images, completed=done_images)
            yield _EpochProgress(progress, task_id)

    def step_loss(self, epoch: int, step: int, steps: int, loss: float) -> None:
        self.line(f"epoch {epoch} step {step:>5}/{steps}: loss {loss:.4f}")

    def epoch_summary(self, metrics: dict[str, Any], total_epochs: int) -> None:
        width = len(str(total_epochs))
        val = (
            "val acc    n/a"
            if metrics["val_accuracy"] is None
            else f"val loss {metrics['val_loss']:.4f}  val acc {100 * metrics['val_accuracy']:6.2f}%"
        )
        views = [(name, metrics.get(f"val_{name}_accuracy")) for name in ("flip", "flip_shift")]
        if any(value is not None for _, value in views):
            val += "  (" + ", ".join(f"{name} {100 * value:.2f}%" for name, value in views if value is not None) + ")"
        self.line(
            f"epoch {metrics['epoch']:>{width}}/{total_epochs}  loss {metrics['train_loss']:.4f}  "
            f"train acc {100 * metrics['train_accuracy']:6.2f}%  {val}  lr {metrics['lr']:.4g}  "
            f"{metrics['seconds']:6.1f}s  ({metrics['train_images_per_second']:.0f} img/s)"
        )


def write_metrics_csv(path: str | Path, metrics: Sequence[dict[str, Any]]) -> None:
    """One row per epoch; empty cells where a value does not exist (no validation set)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in metrics:
        writer.writerow({key: "" if row.get(key) is None else row[key] for key in METRIC_COLUMNS})
    atomic_write_text(path, buffer.getvalue())


def write_curves(path: str | Path, metrics: Sequence[dict[str, Any]], title: str = "") -> None:
    """Loss and accuracy per epoch, train vs validation, as a PNG (matplotlib's Agg backend: no display needed)."""
    from matplotlib.figure import Figure  # imported here: matplotlib is slow to import

    epochs = [row["epoch"] for row in metrics]
    figure = Figure(figsize=(10, 4), dpi=100)
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.82 if title else 0.9, wspace=0.22)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for axes, key, label in ((loss_axes, "loss", "loss"), (accuracy_axes, "accuracy", "accuracy (%)")):
        scale = 100 if key == "accuracy" else 1
        axes.plot(epochs, [scale * row[f"train_{key}"] for row in metrics], marker="o", label="train")
        val_points = [(row["epoch"], scale * row[f"val_{key}"]) for row in metrics if row[f"val_{key}"] is not None]
        if val_points:
            axes.plot(*zip(*val_points, strict=True), marker="o", label="validation")
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend()
    loss_axes.set_title("loss (train includes label smoothing)")
    accuracy_axes.set_title("accuracy")
    if title:
        figure.suptitle(title)
    with atomic_path(path) as temp_path:
        figure.savefig(temp_path, format="png")


class Curves:
    """Redraws curves.png at ``path`` from the metrics so far (see CURVES_REFRESH_S); only where ``enabled`` (under
    torchrun, rank 0). ``epochs_so_far``: the metrics an existing curves.png already shows (a resumed run)."""

    def __init__(self, path: Path, title: str, enabled: bool, epochs_so_far: int) -> None:
        self.path, self.title, self.enabled = path, title, enabled
        self.drawn_epochs = epochs_so_far if path.exists() else -1
        self.drawn_at = time.perf_counter()

    def draw(self, metrics: Sequence[dict[str, Any]], force: bool = True) -> None:
        if not self.enabled or not metrics or len(metrics) == self.drawn_epochs:
            return
        if not force and time.perf_counter() - self.drawn_at < CURVES_REFRESH_S:
            return
        write_curves(self.path, metrics, title=self.title)
        self.drawn_epochs, self.drawn_at = len(metrics), time.perf_counter()
