"""How ``cifar-eval`` shows its work: a progress bar with images/s on stderr, a summary of eval.json on stdout."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

# Console lines: the most confused pairs shown (eval.json lists more).
PAIRS_SHOWN = 5


@contextlib.contextmanager
def progress_bar(console: Console, total: int, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a bar with images/s and ETA on ``console`` while enabled."""
    if not enabled or total < 1:
        yield lambda _count: None
        return
    with Progress(
        TextColumn("evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} img/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("evaluate", total=total, rate="-")

        def advance(count: int) -> None:
            bar.advance(task, count)
            elapsed = bar.tasks[0].elapsed or 0.0
            if elapsed > 0:
                bar.update(task, rate=f"{bar.tasks[0].completed / elapsed:,.0f}")

        yield advance


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f}%"


def print_summary(report: dict[str, Any], console: Console) -> None:
    model, timing = report["model"], report["timing"]
    console.print(
        f"[bold]{escape(str(model.get('format')))}[/] {model.get('precision')} on {model.get('provider')}: "
        f"{report['images']} images evaluated"
        + (f", {report['images_skipped']} skipped" if report["images_skipped"] else "")
        + f" in {timing['seconds']:.2f} s ({timing['images_per_second']:,.0f} img/s)"
    )
    console.print(f"forward passes per image: {model.get('passes', 'unknown')}", markup=False)
    console.print(
        f"top-1 accuracy [bold]{percent(report['top1_accuracy'])}[/]   "
        f"top-{report['top5_k']} accuracy {percent(report['top5_accuracy'])}   "
        f"mean class accuracy {percent(report['mean_class_accuracy'])}"
    )
    classes = Table(title="per-class accuracy", show_edge=False, header_style="bold", title_justify="left")
    classes.add_column("class")
    classes.add_column("images", justify="right")
    classes.add_column("correct", justify="right")
    classes.add_column("accuracy", justify="right")
    for row in report["per_class"]:
        classes.add_row(escape(row["class"]), str(row["images"]), str(row["correct"]), percent(row["accuracy"]))
    console.print(classes)
    pairs = report["most_confused"][:PAIRS_SHOWN]
    if pairs:
        confused = Table(title="most confused (true -> predicted)", show_edge=False, header_style="bold")
        confused.title_justify = "left"
        confused.add_column("true")
        confused.add_column("predicted")
        confused.add_column("images", justify="right")
        confused.add_column("of true class", justify="right")
        for pair in pairs:
            share = percent(pair["share_of_true_class"])
            confused.add_row(escape(pair["true"]), escape(pair["predicted"]), str(pair["count"]), share)
        console.print(confused)
    else:
        console.print("no confusions: every image was classified correctly")
    files = report.get("files") or {}
    written = [files.get(key) for key in ("eval_json", "confusion_png", "misclassified_png") if files.get(key)]
    if written:
        console.print("wrote " + ", ".join(written), markup=False)
