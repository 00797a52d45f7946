"""How ``cifar-infer`` shows results: a rich table (default) or JSON lines, failures on stderr, progress on stderr."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TextIO

from rich.console import Console

from cifar_edge.runtime.predictions import Failure, Prediction


class Reporter:
    """Collects or streams results. Failures always go to stderr as one line; --quiet only silences notes."""

    def __init__(self, stdout: TextIO, stderr: TextIO, *, as_json: bool, quiet: bool, top_k: int) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.as_json = as_json
        self.quiet = quiet
        self.top_k = top_k
        self.rows: list[Prediction | Failure] = []
        self.classified = 0
        self.failed = 0
        self._stderr_console = Console(file=stderr, highlight=False, markup=False, soft_wrap=True)

    def note(self, message: str) -> None:
        """An informational line on stderr (which model, which provider, timing), unless --quiet."""
        if not self.quiet:
            self._stderr_console.print(message)

    def warning(self, message: str) -> None:
        """``warning: <message>`` on stderr, even with --quiet (e.g. a symlinked folder skipped as a loop)."""
        self._stderr_console.print(f"warning: {message}")

    def add(self, result: Prediction | Failure) -> None:
        if isinstance(result, Failure):
            self.failed += 1
            self._stderr_console.print(str(result))
        else:
            self.classified += 1
        if self.as_json:
            self.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False, allow_nan=False) + "\n")
        elif isinstance(result, Prediction):
            self.rows.append(result)

    def finish(self) -> None:
        if self.as_json:
            self.stdout.flush()
            return
        if not self.rows:
            return
        from rich.table import Table  # imported on use: a JSON or one-image run starts faster without it

        table = Table(show_edge=False, pad_edge=False, header_style="bold")
        table.add_column("path", overflow="fold")
        table.add_column("label")
        table.add_column("probability", justify="right")
        if self.top_k > 1:
            table.add_column(f"next {self.top_k - 1}", overflow="fold")
        for prediction in self.rows:
            assert isinstance(prediction, Prediction)
            row = [prediction.source, prediction.label, f"{prediction.probability:.3f}"]
            if self.top_k > 1:
                row.append(", ".join(f"{s.label} {s.probability:.3f}" for s in prediction.top_k[1:]))
            table.add_row(*row)
        console = Console(file=self.stdout, highlight=False, markup=False)
        if not console.is_terminal:
            # Piped or redirected: never fold a path across lines; the table is as wide as its content.
            console.width = 100_000
        console.print(table)
        self.stdout.flush()

    def progress(self, results: Iterator[Prediction | Failure], total: int) -> Iterator[Prediction | Failure]:
        """Pass results through, showing a progress bar with throughput and ETA when stderr is a terminal."""
        show = not self.quiet and self._stderr_console.is_terminal and total > 1
        if not show:
            yield from results
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("classifying"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} img/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self._stderr_console,
            transient=True,
        ) as bar:
            task = bar.add_task("classify", total=total, rate="-")
            for result in results:
                bar.advance(task)
                elapsed = bar.tasks[0].elapsed or 0.0
                if elapsed > 0:
                    bar.update(task, rate=f"{bar.tasks[0].completed / elapsed:,.0f}")
                yield result
