"""The onnxruntime session: opened strictly on the requested provider, its threads planned, run in batches.

onnxruntime quietly falls back to the CPU when a GPU provider cannot load, while still listing the GPU provider as
available. We never accept that: after creating a session we read ``session.get_providers()``; an explicitly
requested provider that is not active is a :class:`ProviderUnavailableError` (exit code 3) whose message names the
likely cause (``hardware.diagnose_unavailable``). ``auto`` uses CUDA when it really loads, else the CPU, and says
which (``OpenedSession.note``).

One session is safe to run from several threads at once. With one intra-op thread a run executes on the calling
thread, so each decoding thread can decode its share of a batch and then run the model on it, and the cores never
wait for each other between ops (:func:`choose_concurrency`; docs/runtime.md, "Threads").
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifar_edge.runtime.common.command import ExitCode
from cifar_edge.runtime.hardware import EXECUTION_PROVIDERS, diagnose_unavailable, probe_environment

PROVIDER_CHOICES = ("auto", *EXECUTION_PROVIDERS)
CPU_PROVIDERS = ("cpu", "auto")  # "auto" may end on the CPU; a GPU session gets one stream after it opens

Forward = Callable[[np.ndarray], np.ndarray]


class ProviderUnavailableError(RuntimeError):
    """An explicitly requested execution provider is not active (exit code 3)."""

    exit_code = ExitCode.PROVIDER_UNAVAILABLE

    def __init__(self, requested: str, cause: str) -> None:
        super().__init__(f"--provider {requested} is unavailable: {cause}")
        self.requested = requested
        self.cause = cause


@dataclass(frozen=True)
class SessionThreads:
    intra_op: int  # onnxruntime's intra-op threads of the session
    spin: bool = True  # whether they spin-wait between ops


@dataclass(frozen=True)
class OpenedSession:
    session: Any  # onnxruntime.InferenceSession
    # The provider that runs the model: "cpu", "cuda" or "tensorrt".
    provider: str
    active_providers: tuple[str, ...]
    # One line for the user, e.g. why auto chose the CPU.
    note: str = ""
    intra_op_threads: int = 1


def usable_cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_intra_op_threads() -> int:
    """Every usable core: never slower than one thread end to end, and far faster model-only (docs/runtime.md,
    "Threads"); decoding shares the cores between session runs."""
    return max(1, usable_cpu_count())


def import_onnxruntime(requested: str = "cpu") -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise ProviderUnavailableError(
            requested, f"onnxruntime is not installed ({error}); pip install 'cifar-edge[cpu]' or 'cifar-edge[gpu]'"
        ) from None
    return onnxruntime


def session_options(onnxruntime: Any, intra_op_threads: int, spin: bool = True) -> Any:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    # Spin-waiting between ops is onnxruntime's default and measured faster here even with the decoders running.
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Our graphs are a single chain of ops: parallel execution of independent branches has nothing to win.
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def create_session(
    model: str | os.PathLike[str] | bytes,
    provider: str = "cpu",
    *,
    intra_op_threads: int | None = None,
    spin: bool = True,
) -> OpenedSession:
    """Create an onnxruntime session on ``provider`` (see PROVIDER_CHOICES), strictly.

    Raises ProviderUnavailableError when an explicit provider is not active; model loading problems propagate
    as onnxruntime's own exceptions (the caller turns them into ModelError). ``spin``: let onnxruntime's threads
    spin-wait between ops (its default).
    """
    if provider not in PROVIDER_CHOICES:
        raise ValueError(f"provider must be one of {', '.join(PROVIDER_CHOICES)}, got {provider!r}")
    onnxruntime = import_onnxruntime(provider)
    threads = SessionThreads(intra_op_threads or default_intra_op_threads(), spin)
    model_source = model if isinstance(model, bytes) else str(model)
    if provider == "cpu":
        session = _new_session(onnxruntime, model_source, ["CPUExecutionProvider"], threads)
        return OpenedSession(session, "cpu", tuple(session.get_providers()), intra_op_threads=threads.intra_op)
    if provider == "auto":
        return _create_auto_session(onnxruntime, model_source, threads)
    session, cause = _try_gpu_session(onnxruntime, model_source, provider, threads)
    if session is None:
        raise ProviderUnavailableError(provider, cause)
    return OpenedSession(session, provider, tuple(session.get_providers()), intra_op_threads=threads.intra_op)


def _create_auto_session(onnxruntime: Any, model_source: str | bytes, threads: SessionThreads) -> OpenedSession:
    note = ""
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        session, cause = _try_gpu_session(onnxruntime, model_source, "cuda", threads)
        if session is not None:
            return OpenedSession(session, "cuda", tuple(session.get_providers()), "auto chose CUDA", threads.intra_op)
        note = f"auto chose CPU: CUDA is not usable ({cause})"
    else:
        note = "auto chose CPU: this onnxruntime build has no CUDA provider"
    session = _new_session(onnxruntime, model_source, ["CPUExecutionProvider"], threads)
    return OpenedSession(session, "cpu", tuple(session.get_providers()), note, threads.intra_op)


def _try_gpu_session(
    onnxruntime: Any, model_source: str | bytes, provider: str, threads: SessionThreads
) -> tuple[Any | None, str]:
    """(session, "") when ``provider`` is really active, else (None, cause)."""
    wanted = EXECUTION_PROVIDERS[provider]
    if wanted not in onnxruntime.get_available_providers():
        return None, diagnose_unavailable(provider, probe_environment(onnxruntime))
    providers: list[Any] = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if provider == "tensorrt":
        providers.insert(0, ("TensorrtExecutionProvider", _tensorrt_options()))
    with capture_native_output() as captured:
        preload_gpu_libraries(onnxruntime)
        try:
            session = _new_session(onnxruntime, model_source, providers, threads)
        except Exception as error:
            if not _looks_like_provider_failure(error):
                raise
            session = None
            captured.append(str(error))
    if session is not None and wanted in session.get_providers():
        return session, ""
    return None, diagnose_unavailable(provider, probe_environment(onnxruntime), "\n".join(captured))


def preload_gpu_libraries(onnxruntime: Any) -> None:
    """Let onnxruntime find CUDA/cuDNN installed as Python packages (nvidia-* wheels); a no-op where unsupported."""
    preload = getattr(onnxruntime, "preload_dlls", None)
    if preload is None:
        return
    # preload_dlls reports missing libraries with print(); keep stdout clean for --json.
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.suppress(Exception):
            preload()


@contextlib.contextmanager
def capture_native_output() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 2 (onnxruntime's logger) and Python's stdout/stderr."""
    captured: list[str] = []
    sys.stderr.flush()
    try:
        saved_fd = os.dup(2)
    except OSError:  # no usable fd 2 (embedded interpreters): run uncaptured
        yield captured
        return
    python_buffer = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            # onnxruntime's Python layer print()s its "EP Error ... falling back" notice: keep stdout clean too.
            with contextlib.redirect_stderr(python_buffer), contextlib.redirect_stdout(python_buffer):
                yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            sink.seek(0)
            captured.insert(0, sink.read().decode("utf-8", errors="replace") + python_buffer.getvalue())


def _new_session(onnxruntime: Any, model_source: str | bytes, providers: list[Any], threads: SessionThreads) -> Any:
    options = session_options(onnxruntime, threads.intra_op, threads.spin)
    return onnxruntime.InferenceSession(model_source, sess_options=options, providers=providers)


def _tensorrt_options() -> dict[str, Any]:
    # Building a TensorRT engine takes minutes on small devices; cache it so only the first run pays.
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache_dir = cache_root / "cifar-edge" / "tensorrt"
    with contextlib.suppress(OSError):
        cache_dir.mkdir(parents=True, exist_ok=True)
    return {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)}


def _looks_like_provider_failure(error: Exception) -> bool:
    if type(error).__name__ == "EPFail":
        return True
    return bool(re.search(r"cuda|cudnn|tensorrt|nvinfer|execution provider|provider", str(error), re.IGNORECASE))


@dataclass(frozen=True)
class Concurrency:
    intra_op_threads: int  # onnxruntime intra-op threads of the one session
    streams: int  # session runs at once, each on its own share of a batch


def choose_concurrency(provider: str, intra_op_threads: int | None, streams: int | None, cores: int) -> Concurrency:
    """The session's intra-op threads and the number of concurrent runs, from what the caller fixed.

    Nothing fixed: on the CPU one intra-op thread per run and one run per core; on a GPU every core for the
    session and one run. Only ``intra_op_threads`` fixed: one run with that many threads (what a thread-count
    benchmark means). Only ``streams`` fixed: the cores shared between them.
    """
    for name, value in (("intra_op_threads", intra_op_threads), ("streams", streams)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    cores = max(1, cores)
    if streams is not None:
        return Concurrency(intra_op_threads or max(1, cores // streams), streams)
    if intra_op_threads is not None:
        return Concurrency(intra_op_threads, 1)
    if provider in CPU_PROVIDERS:
        return Concurrency(1, cores)
    return Concurrency(cores, 1)


def split_bounds(count: int, parts: int, unit: int = 1) -> list[tuple[int, int]]:
    """At most ``parts`` contiguous (start, stop) ranges covering ``count`` rows, each a multiple of ``unit`` rows
    but the last (a model with a fixed batch axis runs whole batches of ``unit``); no empty range."""
    if count <= 0:
        return []
    units = -(-count // unit)
    per_part = -(-units // max(1, parts)) * unit
    return [(start, min(count, start + per_part)) for start in range(0, count, per_part)]


def forward_in_batches(forward: Forward, inputs: np.ndarray, batch_size: int, *, pad: bool = False) -> np.ndarray:
    """Concatenated ``forward`` outputs over ``inputs`` (any layout and type: float32 NCHW, or uint8 NHWC pixels for
    a pixel-form model; rows are the first axis) in batches of ``batch_size``.

    ``pad``: every call gets exactly ``batch_size`` rows (a model exported with a fixed batch axis); the last batch
    is zero-padded (black pixels, in the pixel form) and its padding rows dropped from the result.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    outputs = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        rows = len(batch)
        if pad and rows < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - rows, *batch.shape[1:]), batch.dtype)])
        outputs.append(np.asarray(forward(batch))[:rows])
    if not outputs:
        return np.zeros((0,), dtype=np.float32)
    return np.concatenate(outputs)
