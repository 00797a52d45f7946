"""What ``cifar-serve`` does, as one library function: check the options, open the model strictly, warm it up, serve
it over HTTP until SIGTERM/SIGINT, then drain (no new connections; every request already accepted is answered)
and return the exit code (0 after a drain, whatever signal started it).

uvicorn's own signal handling re-raises the signal once its graceful shutdown is over, which would end the process
with the signal's status: the server here installs its own handlers, which mark the server not ready, let queued
batches run at once and ask uvicorn to shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

import numpy as np

from cifar_edge.runtime.classifier import Classifier
from cifar_edge.runtime.common.command import ExitCode
from cifar_edge.runtime.model_file import ModelError
from cifar_edge.runtime.serve.batcher import BatchSettings
from cifar_edge.runtime.serve.protocol import ModelSpec, model_spec
from cifar_edge.runtime.serve.repository import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_QUEUE_DELAY_US, served_model
from cifar_edge.runtime.session import ProviderUnavailableError

if TYPE_CHECKING:
    from cifar_edge.runtime.serve.routes import ServeState

# One set of batching defaults for cifar-serve and the exported Triton config (measured: repository.py).
DEFAULT_MAX_QUEUE_DELAY_MS = DEFAULT_MAX_QUEUE_DELAY_US / 1000
DEFAULT_MAX_QUEUE_SIZE = 256
# Images a request may decode to: lower than Pillow's bomb limit (89 M pixels, 268 MB of RGB) so that a few
# concurrent uploads cannot exhaust an edge device's memory.
SERVER_MAX_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class ServeOptions:
    # A model file (.onnx, served under its stem) or a Triton model repository folder (its config's batching).
    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    # Images per model call (1: batching off); None: the repository config's, else DEFAULT_MAX_BATCH_SIZE.
    max_batch_size: int | None = None
    # How long the first request of a batch waits for others; None: the config's, else DEFAULT_MAX_QUEUE_DELAY_MS.
    max_queue_delay_ms: float | None = None
    # Requests waiting for the model before new ones get 503 + Retry-After.
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    # The name clients use; None: the file's stem (or the repository's model name).
    model_name: str | None = None
    # auto | cpu | cuda | tensorrt, strict as in cifar-infer (exit 3 when the requested one does not load).
    provider: str = "auto"
    # Required from clients (Authorization: Bearer KEY or X-API-Key) on every route but health and the page.
    api_key: str | None = None
    # Serve a non-loopback address without a key, on purpose.
    no_auth: bool = False
    # The one origin browsers may call from (CORS); None: CORS off.
    cors_origin: str | None = None
    # Request bodies larger than this get 413.
    max_body_mib: float = 8.0
    # Seconds a SIGTERM/SIGINT drain may take before the remaining connections are closed.
    drain_timeout: float = 30.0
    # debug: one line per request.
    log_level: str = "info"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(options: ServeOptions, stderr: TextIO | None = None) -> int:
    """Serve until a signal ends it; returns the exit code (an ExitCode)."""
    stderr = stderr or sys.stderr
    if options.api_key is not None and options.no_auth:
        stderr.write("error: --api-key and --no-auth contradict each other: give one\n")
        return ExitCode.USAGE
    if options.api_key is None and not options.no_auth and not is_loopback(options.host):
        stderr.write(f"error: serving on {options.host} (not loopback) needs --api-key KEY, or --no-auth on purpose\n")
        return ExitCode.USAGE
    # The [serve] extra, imported before the model loads so that a missing one is the one-line error at once.
    import python_multipart  # noqa: F401  (starlette's form parser: a missing one would be a 500 per upload)
    import uvicorn  # noqa: F401

    from cifar_edge.runtime.serve import routes  # noqa: F401

    try:
        served = served_model(options.model, options.model_name)
        classifier = Classifier(served.model_path, options.provider, max_pixels=SERVER_MAX_PIXELS)
    except (ModelError, ProviderUnavailableError) as error:
        stderr.write(f"error: {error}\n")
        return error.exit_code
    max_batch = options.max_batch_size or served.max_batch_size or DEFAULT_MAX_BATCH_SIZE
    delay_ms = options.max_queue_delay_ms
    if delay_ms is None:
        delay_ms = served.max_queue_delay_ms if served.max_queue_delay_ms is not None else DEFAULT_MAX_QUEUE_DELAY_MS
    name = options.model_name or served.name
    spec = model_spec(
        classifier.contract, classifier.io.output_names, name=name, batching=(max_batch, round(delay_ms * 1000))
    )
    # Model calls at once: the repository's instance count (instance_group), else two (one runs, one is gathered).
    workers = served.instances or 2
    settings = BatchSettings(max_batch, delay_ms / 1000, options.max_queue_size, workers=workers)
    _configure_logging(options.log_level)
    try:
        asyncio.run(_serve(options, classifier, spec, settings, stderr))
    finally:
        classifier.close()
    return ExitCode.OK


def _configure_logging(level: str) -> None:
    logger = logging.getLogger("cifar_edge.serve")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)


def _runner(classifier: Classifier) -> Callable[[str, np.ndarray], np.ndarray]:
    def run(kind: str, batch: np.ndarray) -> np.ndarray:
        # Decoded images (contract-size pixels) through logits(); a client's tensors as they are through forward().
        return classifier.logits(batch) if kind == "pixels" else classifier.forward(batch)

    return run


async def _serve(
    options: ServeOptions, classifier: Classifier, spec: ModelSpec, settings: BatchSettings, stderr: TextIO
) -> None:
    import uvicorn

    from cifar_edge.runtime.serve.batcher import Batcher
    from cifar_edge.runtime.serve.drain import DrainingServer
    from cifar_edge.runtime.serve.metrics import ServeMetrics
    from cifar_edge.runtime.serve.routes import ServeState, build_app

    run = _runner(classifier)
    height, width = spec.contract.image_size
    # Warm-up, before the server is ready: the first run of a session is slow (memory plans, kernels).
    await asyncio.get_running_loop().run_in_executor(None, run, "pixels", np.zeros((1, height, width, 3), np.uint8))
    metrics = ServeMetrics()
    batcher = Batcher(run, settings, metrics)
    state = ServeState(
        spec=spec,
        batcher=batcher,
        metrics=metrics,
        prepare=classifier.prepare,
        api_key=options.api_key,
        cors_origin=options.cors_origin,
        max_body_bytes=int(options.max_body_mib * (1 << 20)),
    )
    batcher.start()
    state.ready = True
    config = uvicorn.Config(
        build_app(state),
        host=options.host,
        port=options.port,
        log_level=options.log_level,
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=max(math.ceil(options.drain_timeout), 1),
    )
    server = DrainingServer(config, on_signal=lambda: _drain(state))
    stderr.write(_startup_line(options, classifier, spec) + "\n")
    stderr.flush()
    await server.serve()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(batcher.stop(), max(options.drain_timeout, 0.1))


def _drain(state: ServeState) -> None:
    state.ready = False  # load balancers stop sending; requests already accepted are still answered
    state.batcher.flush()


def _startup_line(options: ServeOptions, classifier: Classifier, spec: ModelSpec) -> str:
    host = f"[{options.host}]" if ":" in options.host else options.host
    threads = classifier.intra_op_threads
    batching = (
        f"batches of up to {spec.max_batch_size} images within {spec.max_queue_delay_us / 1000:g} ms"
        if spec.max_batch_size > 1
        else "batching off"
    )
    return (
        f"cifar-serve: http://{host}:{options.port}/ model {spec.name!r} ({classifier.path}, {spec.kind} input, "
        f"{spec.contract.num_classes} classes); provider {classifier.provider}; {classifier.streams} runs at once x "
        f"{threads} thread{'s' if threads > 1 else ''}; {batching}, queue {options.max_queue_size}; "
        f"auth {'API key' if options.api_key else 'off'}"
    )
