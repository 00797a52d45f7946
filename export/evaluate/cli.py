"""``cifar-eval``: accuracy, per-class accuracy and a confusion matrix for any cifar-edge model.

Thin CLI: parses options and calls ``eval_command.run_eval``. Imports no torch: an ONNX model is evaluated by the
torch-free runtime; torch is loaded only for PyTorch / TorchScript / .pt2 models (and torchvision for --data
cifar10). Exit codes: README.md's table; ``--help`` lists the ones this command uses.
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from cifar_edge.export.evaluate.command import EvalOptions, run_eval
from cifar_edge.runtime.defaults import default_of
from cifar_edge.runtime.entry import run_command
from cifar_edge.runtime.errors import ExitCode, describe_exit_codes


def _default(name: str) -> object:
    return default_of(EvalOptions, name)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


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
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL", help="Run folder, checkpoint.pt, TorchScript (.pt), torch.export (.pt2) or ONNX file."
        ),
    ],
    data: Annotated[
        str,
        typer.Option(
            "--data", "-d", help="'cifar10' (official test split) or a folder: PATH/test/<class>/*, or PATH/<class>/*."
        ),
    ],
    provider: Annotated[
        Literal["auto", "cpu", "cuda", "tensorrt"],
        typer.Option("--provider", "-p", help="auto: CUDA if it really loads, else CPU. Others are strict (exit 3)."),
    ] = _default("provider"),
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per model call.")] = _default(
        "batch_size"
    ),
    output_dir: Annotated[
        str | None,
        typer.Option("--output-dir", "-o", help="Where eval.json and the plots go. Default: <model file>.eval/"),
    ] = _default("output_dir"),
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Evaluate a class-stratified subset of N images.")
    ] = _default("limit"),
    data_root: Annotated[
        str | None, typer.Option("--data-root", help="Where CIFAR-10 lives or is downloaded to (--data cifar10).")
    ] = _default("data_root"),
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="Model threads (onnxruntime or torch). Default: all cores."),
    ] = _default("threads"),
    decode_workers: Annotated[
        int | None, typer.Option("--decode-workers", min=1, help="Image decoding threads. Default: all cores.")
    ] = _default("decode_workers"),
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots", help="Write confusion.png and misclassified.png.")
    ] = _default("plots"),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print eval.json on stdout instead of the summary.")
    ] = _default("as_json"),
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No summary, notes or progress; errors still print.")
    ] = _default("quiet"),
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
