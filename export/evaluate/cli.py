"""``cifar-eval``: accuracy, per-class accuracy and a confusion matrix for any cifar-edge model.

Thin CLI: parses options and calls ``eval_command.run_eval``. Imports no torch: an ONNX model is evaluated by the
torch-free runtime; torch is loaded only for PyTorch / TorchScript / .pt2 models (and torchvision for --data
cifar10). Exit codes: README.md's table; ``--help`` lists the ones this command uses.
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from cifar_edge.export.evaluate.command import EvalOptions, run_eval
from cifar_edge.runtime.common.command import ExitCode, default_of, describe_exit_codes, run_command


def _default(name: str) -> object:
    return default_of(EvalOptions, name)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


Model = Annotated[
    str,
    typer.Argument(
        metavar="MODEL", help="Run folder, checkpoint.pt, TorchScript (.pt), torch.export (.pt2) or ONNX file."
    ),
]
Data = Annotated[
    str,
    typer.Option(
        "--data", "-d", help="'cifar10' (official test split) or a folder: PATH/test/<class>/*, or PATH/<class>/*."
    ),
]
Provider = Annotated[
    Literal["auto", "cpu", "cuda", "tensorrt"],
    typer.Option("--provider", "-p", help="auto: CUDA if it really loads, else CPU. Others are strict (exit 3)."),
]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per model call.")]
OutputDir = Annotated[
    str | None, typer.Option("--output-dir", "-o", help="Where eval.json and the plots go. Default: <model file>.eval/")
]
Limit = Annotated[int | None, typer.Option("--limit", min=1, help="Evaluate a class-stratified subset of N images.")]
DataRoot = Annotated[
    str | None, typer.Option("--data-root", help="Where CIFAR-10 lives or is downloaded to (--data cifar10).")
]
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="Model threads (one run at a time). Default: ONNX on CPU one 1-thread run per core, else all cores.",
    ),
]
DecodeWorkers = Annotated[
    int | None, typer.Option("--decode-workers", min=1, help="Image decoding threads. Default: all cores.")
]
Plots = Annotated[bool, typer.Option("--plots/--no-plots", help="Write confusion.png and misclassified.png.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print eval.json on stdout instead of the summary.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No summary, notes or progress; errors still print.")]


@app.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=describe_exit_codes(
        {
            ExitCode.OK: "evaluated",
            ExitCode.FAILED: "evaluated, some images could not be decoded (skipped, listed in eval.json)",
            ExitCode.USAGE: "usage error, unusable model or data",
            ExitCode.PROVIDER_UNAVAILABLE: "requested provider unavailable",
            ExitCode.WRITE_FAILED: "the output folder cannot be written (checked before evaluating)",
            ExitCode.INTERRUPTED: "interrupted",
        }
    ),
)
def evaluate(
    model: Model,
    data: Data,
    provider: Provider = _default("provider"),
    batch_size: BatchSize = _default("batch_size"),
    output_dir: OutputDir = _default("output_dir"),
    limit: Limit = _default("limit"),
    data_root: DataRoot = _default("data_root"),
    threads: Threads = _default("threads"),
    decode_workers: DecodeWorkers = _default("decode_workers"),
    plots: Plots = _default("plots"),
    as_json: AsJson = _default("as_json"),
    quiet: Quiet = _default("quiet"),
) -> None:
    """Evaluate a model on labelled images: top-1/top-5, per-class accuracy, confusion matrix, mistakes."""
    options = EvalOptions(
        model=model,
        data=data,
        provider=provider,
        batch_size=batch_size,
        output_dir=output_dir,
        limit=limit,
        data_root=data_root,
        threads=threads,
        decode_workers=decode_workers,
        as_json=as_json,
        quiet=quiet,
        plots=plots,
    )
    raise typer.Exit(run_eval(options))


def main() -> None:
    run_command(app, "cifar-eval: interrupted", command="cifar-eval")


if __name__ == "__main__":
    main()
