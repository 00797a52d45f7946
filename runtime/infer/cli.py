"""``cifar-infer``: classify image files with an exported cifar-edge ONNX model (torch-free).

Exit codes: the README's table (runtime/common/command.py); --help lists the ones this command uses.
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from cifar_edge.runtime.classifier import DEFAULT_BATCH_SIZE, DEFAULT_TOP_K
from cifar_edge.runtime.common.command import ExitCode, describe_exit_codes, run_command
from cifar_edge.runtime.infer.command import InferOptions, run_infer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"cifar-infer (cifar-edge) {version('cifar-edge')}")
        raise typer.Exit()


Inputs = Annotated[
    list[str] | None,
    typer.Argument(help="Image files, folders (searched recursively), glob patterns, or - to read from stdin."),
]
Model = Annotated[
    str | None,
    typer.Option("--model", "-m", help="ONNX model. Default: $CIFAR_EDGE_MODEL, then runs/latest/model.onnx."),
]
Provider = Annotated[
    Literal["auto", "cpu", "cuda", "tensorrt"],
    typer.Option("--provider", "-p", help="auto: CUDA if it really loads, else CPU. Others are strict (exit 3)."),
]
TopK = Annotated[int, typer.Option("--top-k", "-k", min=1, help="List the K most probable classes.")]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per model run.")]
AsJson = Annotated[bool, typer.Option("--json", help="One JSON object per input on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No notes on stderr; failures still print.")]
Doctor = Annotated[bool, typer.Option("--doctor", help="Report installation, providers, GPU and model.")]
Threads = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="onnxruntime threads per run. Default: 1 per stream on CPU, all on GPU."),
]
Streams = Annotated[
    int | None,
    typer.Option(
        "--streams",
        min=1,
        help="Model runs at once, each on part of a batch. Default: one per core on CPU (1 with --threads).",
    ),
]
DecodeWorkers = Annotated[
    int | None, typer.Option("--decode-workers", min=1, help="Image decoding threads. Default: all cores.")
]
MaxPixels = Annotated[
    int | None, typer.Option("--max-pixels", min=1, help="Refuse images above this many pixels. Default: 89,478,485.")
]
Version = Annotated[
    bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
]


@app.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=describe_exit_codes(
        {
            ExitCode.OK: "all inputs classified",
            ExitCode.FAILED: "some inputs failed",
            ExitCode.USAGE: "usage error or unusable model",
            ExitCode.PROVIDER_UNAVAILABLE: "requested provider unavailable",
            ExitCode.INTERRUPTED: "interrupted",
        }
    )
    + " See docs/runtime.md.",
)
def infer(
    inputs: Inputs = None,
    model: Model = None,
    provider: Provider = "auto",
    top_k: TopK = DEFAULT_TOP_K,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    as_json: AsJson = False,
    quiet: Quiet = False,
    doctor: Doctor = False,
    threads: Threads = None,
    streams: Streams = None,
    decode_workers: DecodeWorkers = None,
    max_pixels: MaxPixels = None,
    version: Version = False,
) -> None:
    """Classify images with an exported cifar-edge ONNX model on CUDA or CPU."""
    if doctor:
        from cifar_edge.runtime.infer.doctor import run_doctor  # on use: classifying never pays for its imports

        raise typer.Exit(run_doctor(model, provider, as_json=as_json))
    options = InferOptions(
        inputs=tuple(inputs or ()),
        model=model,
        provider=provider,
        top_k=top_k,
        batch_size=batch_size,
        as_json=as_json,
        quiet=quiet,
        intra_op_threads=threads,
        streams=streams,
        decode_workers=decode_workers,
        max_pixels=max_pixels,
    )
    raise typer.Exit(run_infer(options))


def main() -> None:
    run_command(app, "interrupted", command="cifar-infer")


if __name__ == "__main__":
    main()
