"""What ``cifar-bench RUN_A RUN_B ...`` does, as one function: check the output folder, measure, write, report.

Exit codes: 0 every run measured; 1 some run's row failed (the others are still measured and written); 5 the
output folder cannot take menu.md, menu.json and menu.png (checked before measuring).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from rich.console import Console

from cifar_edge.export.benchmark.config import BenchConfig
from cifar_edge.export.benchmark.menu.report import print_menu, write_menu
from cifar_edge.export.benchmark.menu.run import MenuResult, run_menu
from cifar_edge.export.benchmark.report import table_console
from cifar_edge.runtime.common.atomic_io import check_writable, write_error
from cifar_edge.runtime.common.command import ExitCode
from cifar_edge.runtime.common.names import MENU_JSON, MENU_MD, MENU_PNG


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
    result: MenuResult, written: dict[str, str | None], errors: Console, *, quiet: bool, as_json: bool
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
