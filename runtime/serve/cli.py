"""``cifar-serve``: serve a model over HTTP (the Open Inference Protocol, an image endpoint, a page), torch-free.

Exit codes: the README's table (runtime/common/command.py); --help lists the ones this command uses.
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from cifar_edge.runtime.common.command import ExitCode, default_of, describe_exit_codes, run_command
from cifar_edge.runtime.serve.server import ServeOptions, run_serve

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

Model = Annotated[str, typer.Argument(help="An ONNX model file, or a Triton model repository folder.")]
Host = Annotated[str, typer.Option("--host", help="Address to bind. Not loopback: needs --api-key or --no-auth.")]
Port = Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")]
MaxBatch = Annotated[
    int | None,
    typer.Option("--max-batch-size", min=1, help="Images per model call; 1 turns batching off. Default: 64."),
]
Delay = Annotated[
    float | None,
    typer.Option("--max-queue-delay-ms", min=0, help="How long a request waits for others to batch with. Default: 0."),
]
QueueSize = Annotated[
    int, typer.Option("--max-queue-size", min=1, help="Requests waiting before new ones get 503 + Retry-After.")
]
ModelName = Annotated[str | None, typer.Option("--model-name", help="Name clients use. Default: the file's stem.")]
Provider = Annotated[
    Literal["auto", "cpu", "cuda", "tensorrt"],
    typer.Option("--provider", "-p", help="auto: CUDA if it really loads, else CPU. Others are strict (exit 3)."),
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="CIFAR_SERVE_API_KEY", help="Key clients send (Bearer or X-API-Key)."),
]
NoAuth = Annotated[bool, typer.Option("--no-auth", help="Serve a non-loopback address without a key, on purpose.")]
Cors = Annotated[str | None, typer.Option("--cors-origin", help="The origin browsers may call from. Default: none.")]
MaxBody = Annotated[float, typer.Option("--max-body-mib", min=0.001, help="Larger request bodies get 413.")]
Drain = Annotated[float, typer.Option("--drain-timeout", min=0, help="Seconds a SIGTERM/SIGINT drain may take.")]
LogLevel = Annotated[
    Literal["debug", "info", "warning", "error"],
    typer.Option("--log-level", help="debug: one line per request."),
]


@app.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=describe_exit_codes(
        {
            ExitCode.OK: "served, then drained after SIGTERM/SIGINT",
            ExitCode.USAGE: "usage error, unusable model, or a non-loopback address without --api-key/--no-auth",
            ExitCode.PROVIDER_UNAVAILABLE: "requested provider unavailable",
        }
    )
    + " See docs/serving.md.",
)
def serve(
    model: Model,
    host: Host = default_of(ServeOptions, "host"),
    port: Port = default_of(ServeOptions, "port"),
    max_batch_size: MaxBatch = None,
    max_queue_delay_ms: Delay = None,
    max_queue_size: QueueSize = default_of(ServeOptions, "max_queue_size"),
    model_name: ModelName = None,
    provider: Provider = "auto",
    api_key: ApiKey = None,
    no_auth: NoAuth = False,
    cors_origin: Cors = None,
    max_body_mib: MaxBody = default_of(ServeOptions, "max_body_mib"),
    drain_timeout: Drain = default_of(ServeOptions, "drain_timeout"),
    log_level: LogLevel = "info",
) -> None:
    """Serve an exported cifar-edge ONNX model over HTTP: Open Inference Protocol, /classify, a page at /."""
    options = ServeOptions(
        model=model,
        host=host,
        port=port,
        max_batch_size=max_batch_size,
        max_queue_delay_ms=max_queue_delay_ms,
        max_queue_size=max_queue_size,
        model_name=model_name,
        provider=provider,
        api_key=api_key,
        no_auth=no_auth,
        cors_origin=cors_origin,
        max_body_mib=max_body_mib,
        drain_timeout=drain_timeout,
        log_level=log_level,
    )
    raise typer.Exit(run_serve(options))


def main() -> None:
    run_command(app, "interrupted", command="cifar-serve")


if __name__ == "__main__":
    main()
