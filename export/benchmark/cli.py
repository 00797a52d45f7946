"""``cifar-bench``: every format and provider of a run in one table (``yolo benchmark`` style), or several runs
as a menu (one row per run: size, FLOPs, accuracy at 1/2/6 passes, one-pass fp32 and int8 speed).

Thin CLI: parses options and calls ``measure.run_benchmark`` (one run) or ``menu_report.bench_menu`` (several).
Exit codes: 0 every row measured or skipped with a reason; 1 some row failed (an export failed its parity gate, an
artifact did not load or run, a menu's run folder was unusable); 2 usage error, unusable run folder or data (one
run); 5 the run or output folder cannot be written; 130 interrupted. See README.md.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from cifar_edge.export.benchmark.artifacts import VARIANTS, BenchConfig
from cifar_edge.runtime.common.atomic_io import check_writable, write_error
from cifar_edge.runtime.common.command import ExitCode, default_of, describe_exit_codes, run_command
from cifar_edge.runtime.common.names import BENCH_JSON, BENCH_MD

if TYPE_CHECKING:
    from cifar_edge.export.benchmark.measure import BenchResult

ALL_FORMATS = ",".join(default_of(BenchConfig, "formats"))
# Rows measured only when --formats names them (the Triton repository, whose model file onnx-fp32 measures).
_OTHER_FORMATS = ", ".join(key for key in VARIANTS if key not in default_of(BenchConfig, "formats"))


def _default(name: str) -> object:
    return default_of(BenchConfig, name)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in value.split(",") if part.strip())


RunDirs = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="[RUN_DIR]...",
        help="Run folder; default: the latest run (runs/latest). Several: a menu, one row per run "
        "(one-pass fp32 and int8 ONNX on the CPU; --providers, --formats, --cold-start apply to one run only).",
        show_default=False,
    ),
]
Providers = Annotated[
    str, typer.Option("--providers", help="Comma-separated: cpu, cuda. CUDA rows only where CUDA is active.")
]
Formats = Annotated[str, typer.Option("--formats", help=f"Comma-separated rows: {ALL_FORMATS}; also {_OTHER_FORMATS}.")]
Data = Annotated[
    str | None,
    typer.Option("--data", help="Eval images: a labelled folder or 'cifar10'. Default: the run's validation split."),
]
DataRoot = Annotated[str | None, typer.Option("--data-root", help="Where CIFAR-10 lives.")]
OutputDir = Annotated[
    Path | None,
    typer.Option(
        "--output-dir",
        "-o",
        help="Where bench.md and bench.json go (default: RUN_DIR), or a menu's menu.md, menu.json and menu.png "
        "(default: the current folder).",
    ),
]
Threads = Annotated[
    int | None, typer.Option("--threads", min=1, help="Threads for torch and onnxruntime alike. Default: all cores.")
]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Batch of the throughput column.")]
Images = Annotated[int | None, typer.Option("--images", min=1, help="Use at most N eval images (class-stratified).")]
Quick = Annotated[bool, typer.Option("--quick", help="Smoke run: 64 images, few repeats, rough numbers.")]
ColdStart = Annotated[
    bool, typer.Option("--cold-start/--no-cold-start", help="Time fresh processes (seconds per torch row).")
]
AsJson = Annotated[
    bool, typer.Option("--json", help="Print bench.json (a menu: menu.json) on stdout instead of the table.")
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No table or progress; errors still print.")]


@app.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=describe_exit_codes(
        {
            ExitCode.OK: "every row measured (or skipped, saying why)",
            ExitCode.FAILED: "some row failed (export gate, load or run error, a menu's unusable run folder; the "
            "other rows are still measured)",
            ExitCode.USAGE: "usage error, unusable run folder or data",
            ExitCode.WRITE_FAILED: "the run or output folder cannot be written (checked before measuring)",
            ExitCode.INTERRUPTED: "interrupted",
        }
    ),
)
def bench(
    run_dirs: RunDirs = None,
    providers: Providers = ",".join(default_of(BenchConfig, "providers")),
    formats: Formats = ALL_FORMATS,
    data: Data = _default("data"),
    data_root: DataRoot = _default("data_root"),
    output_dir: OutputDir = _default("output_dir"),
    threads: Threads = _default("threads"),
    batch_size: BatchSize = _default("batch_size"),
    images: Images = _default("images"),
    quick: Quick = _default("quick"),
    measure_cold_start: ColdStart = _default("cold_start"),
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Benchmark eager PyTorch and every format and precision cifar-export writes, of one run on CPU and CUDA, or
    several runs as a menu."""
    runs = tuple(run_dirs or ())
    config = BenchConfig(
        run_dir=runs[0] if runs else None,
        run_dirs=runs if len(runs) > 1 else (),
        providers=_split(providers),
        formats=_split(formats),
        data=data,
        data_root=data_root,
        output_dir=output_dir,
        threads=threads,
        batch_size=batch_size,
        images=images,
        quick=quick,
        cold_start=measure_cold_start,
    )
    if config.run_dirs:
        from cifar_edge.export.benchmark.menu_report import bench_menu  # torch loads with it, after parsing

        raise typer.Exit(bench_menu(config, quiet=quiet, as_json=as_json))
    raise typer.Exit(_bench_one(config, quiet=quiet, as_json=as_json))


def _bench_one(config: BenchConfig, *, quiet: bool, as_json: bool) -> int:
    """One run's table: check the output folder, measure, write bench.md / bench.json, print; the exit code."""
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    from cifar_edge.export.benchmark.measure import run_benchmark
    from cifar_edge.export.benchmark.report import write_report  # torch loads with these, after parsing
    from cifar_edge.export.config import ExportError
    from cifar_edge.export.run_data import resolve_run_dir
    from cifar_edge.runtime.labelled import LabelledDataError

    show_progress = not (quiet or as_json) and errors.is_terminal
    destination: Path | None = None
    try:
        destination = Path(config.output_dir) if config.output_dir else resolve_run_dir(config.run_dir)
        # Before anything is measured: bench.md and bench.json (and any artifact exported on the way) go there.
        check_writable(destination, files=[destination / BENCH_MD, destination / BENCH_JSON], create=False)
        with errors.status("benchmarking", spinner="dots") if show_progress else contextlib.nullcontext() as status:
            result = run_benchmark(config, step=status.update if status is not None else None)
        written = write_report(result.report, destination)
    except (ExportError, LabelledDataError) as error:
        errors.print(f"cifar-bench: error: {error}", markup=False)
        return ExitCode.USAGE
    except OSError as error:  # the previous bench.md / bench.json are left as they were (atomic writes)
        failure = write_error(destination or Path("."), error)
        hint = "" if config.output_dir else "; choose another folder with --output-dir"
        errors.print(f"cifar-bench: error: {failure}{hint}", markup=False)
        return ExitCode.WRITE_FAILED
    _print_result(result, written, errors, quiet=quiet, as_json=as_json)
    return result.exit_code


def _print_result(result: BenchResult, written: dict[str, str], errors: Console, *, quiet: bool, as_json: bool) -> None:
    """bench.json on stdout, or the table and where it went; then one stderr line per failed row."""
    from cifar_edge.export.benchmark.report import print_report, table_console

    if as_json:
        print(json.dumps(result.report, ensure_ascii=False, allow_nan=False))
    elif not quiet:
        console = table_console()
        print_report(result.report, console)
        console.print(f"wrote {written['bench_md']}, {written['bench_json']}", markup=False)
    for row in result.rows:
        if row.status == "failed":
            errors.print(f"cifar-bench: {row.format} {row.precision} {row.provider} failed: {row.reason}", markup=False)


def main() -> None:
    run_command(app, "cifar-bench: interrupted", command="cifar-bench")


if __name__ == "__main__":
    main()
