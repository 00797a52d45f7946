"""Strict onnxruntime execution-provider selection.

onnxruntime quietly falls back to the CPU when a GPU provider cannot load, while still listing the GPU provider as
available. We never accept that: after creating a session we read ``session.get_providers()``; an explicitly
requested provider that is not active is a :class:`ProviderUnavailableError` (exit code 3) whose message names the
likely cause. ``auto`` uses CUDA when it really loads, else the CPU, and says which (``OpenedSession.note``).
"""

from __future__ import annotations

import contextlib
import ctypes.util
import importlib.metadata
import io
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")
EXECUTION_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
# Distributions that all install the same `onnxruntime` import package; more than one means one overwrote another.
ONNXRUNTIME_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-openvino",
    "onnxruntime-qnn",
    "onnxruntime-rocm",
    "onnxruntime-migraphx",
    "onnxruntime-training",
    "ort-nightly",
    "ort-nightly-gpu",
)
GPU_INSTALL_HINT = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'cifar-edge[gpu]'"
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
# "2026-05-09 20:19:32.55 [E:onnxruntime:Default, provider_bridge_ort.cc:2458 operator()] " and similar.
_LOG_PREFIX = re.compile(r"^.*?\[[EWI]:onnxruntime:[^\]]*\]\s*")
# Lines of onnxruntime's native log that explain a provider load failure.
_LOAD_FAILURE_PATTERN = re.compile(
    r"(cannot open shared object|failed to load|error while loading|no such file|undefined symbol|"
    r"cuda failure|cudnn|cublas|libnvinfer|cuda driver version|no cuda-capable device|CUDA_ERROR)",
    re.IGNORECASE,
)


class ProviderUnavailableError(RuntimeError):
    """An explicitly requested execution provider is not active (exit code 3)."""

    def __init__(self, requested: str, cause: str) -> None:
        super().__init__(f"--provider {requested} is unavailable: {cause}")
        self.requested = requested
        self.cause = cause


@dataclass(frozen=True)
class OpenedSession:
    session: Any  # onnxruntime.InferenceSession
    # The provider that runs the model: "cpu", "cuda" or "tensorrt".
    provider: str
    active_providers: tuple[str, ...]
    # One line for the user, e.g. why auto chose the CPU.
    note: str = ""
    intra_op_threads: int = 1


@dataclass(frozen=True)
class ProviderEnvironment:
    """The facts a diagnosis rests on (gathered by :func:`probe_environment`, or written out in tests)."""

    # Installed onnxruntime distributions and their versions.
    packages: dict[str, str] = field(default_factory=dict)
    # onnxruntime.get_available_providers(): what the installed build contains.
    built_in: tuple[str, ...] = ()
    # A short description of the visible NVIDIA GPU/driver, or None when nothing is visible.
    gpu: str | None = None


def usable_cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_intra_op_threads() -> int:
    """Half the usable cores (at least 1): the other half decodes images while the session runs.

    Measured on 2 vCPUs: 1 intra-op thread beat 2 for batched runs, because decoding then has a core of its own.
    """
    return max(1, usable_cpu_count() // 2)


def installed_onnxruntime_packages() -> dict[str, str]:
    found = {}
    for name in ONNXRUNTIME_DISTRIBUTIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def import_onnxruntime(requested: str = "cpu") -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise ProviderUnavailableError(
            requested, f"onnxruntime is not installed ({error}); pip install 'cifar-edge[cpu]' or 'cifar-edge[gpu]'"
        ) from None
    return onnxruntime


def visible_nvidia_gpu() -> str | None:
    """A short description of a visible NVIDIA driver/GPU (desktop, WSL2 or Jetson), or None."""
    driver_version = Path("/proc/driver/nvidia/version")
    if driver_version.is_file():
        with contextlib.suppress(OSError):
            first_line = driver_version.read_text(errors="replace").splitlines()[0]
            return " ".join(first_line.split()[:8])
    for marker, description in (
        ("/dev/nvidia0", "NVIDIA device /dev/nvidia0"),
        ("/dev/dxg", "WSL2 GPU device /dev/dxg"),
        ("/etc/nv_tegra_release", "NVIDIA Jetson (L4T)"),
    ):
        if os.path.exists(marker):
            return description
    if ctypes.util.find_library("cuda"):
        return "CUDA driver library libcuda found"
    return None


def probe_environment(onnxruntime: Any | None = None) -> ProviderEnvironment:
    built_in: tuple[str, ...] = ()
    if onnxruntime is not None:
        built_in = tuple(onnxruntime.get_available_providers())
    return ProviderEnvironment(packages=installed_onnxruntime_packages(), built_in=built_in, gpu=visible_nvidia_gpu())


def diagnose_unavailable(requested: str, environment: ProviderEnvironment, load_log: str = "") -> str:
    """One line naming the most likely reason why ``requested`` ("cuda" or "tensorrt") is not active."""
    provider_name = EXECUTION_PROVIDERS[requested]
    packages = environment.packages
    if not packages and not environment.built_in:
        return "onnxruntime is not installed; " + GPU_INSTALL_HINT
    if len(packages) > 1:
        listed = " and ".join(f"{name} {version}" for name, version in sorted(packages.items()))
        return (
            f"{listed} are both installed; they share the import name 'onnxruntime' and overwrite each other's "
            f"files; {GPU_INSTALL_HINT}"
        )
    if provider_name not in environment.built_in:
        package, version = next(iter(packages.items()), ("onnxruntime", "?"))
        if package == "onnxruntime" or "CUDAExecutionProvider" not in environment.built_in:
            return f"the installed {package} {version} is CPU-only (it has no {provider_name}); {GPU_INSTALL_HINT}"
        return f"the installed {package} {version} was built without {provider_name}"
    library_line = summarize_load_failure(load_log)
    if environment.gpu is None:
        suffix = f"; also: {library_line}" if library_line else ""
        return (
            "no NVIDIA GPU or driver is visible (no /proc/driver/nvidia, /dev/nvidia0 or libcuda; in a container, "
            f"start it with --gpus all){suffix}"
        )
    if library_line:
        family = "TensorRT" if requested == "tensorrt" and "nvinfer" in library_line.lower() else "CUDA/cuDNN"
        return (
            f"a {family} library failed to load ({library_line}); pip install 'onnxruntime-gpu[cuda,cudnn]' "
            "brings CUDA and cuDNN as Python packages; see cifar-infer --doctor"
        )
    return (
        f"onnxruntime fell back to the CPU without loading {provider_name} (GPU seen: {environment.gpu}); "
        "run cifar-infer --doctor for the libraries it found"
    )


def session_options(onnxruntime: Any, intra_op_threads: int) -> Any:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
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
) -> OpenedSession:
    """Create an onnxruntime session on ``provider`` (see PROVIDER_CHOICES), strictly.

    Raises ProviderUnavailableError when an explicit provider is not active; model loading problems propagate
    as onnxruntime's own exceptions (the caller turns them into ModelError).
    """
    if provider not in PROVIDER_CHOICES:
        raise ValueError(f"provider must be one of {', '.join(PROVIDER_CHOICES)}, got {provider!r}")
    onnxruntime = import_onnxruntime(provider)
    threads = intra_op_threads or default_intra_op_threads()
    model_source = model if isinstance(model, bytes) else str(model)
    if provider == "cpu":
        session = _new_session(onnxruntime, model_source, ["CPUExecutionProvider"], threads)
        return OpenedSession(session, "cpu", tuple(session.get_providers()), intra_op_threads=threads)
    if provider == "auto":
        return _create_auto_session(onnxruntime, model_source, threads)
    session, cause = _try_gpu_session(onnxruntime, model_source, provider, threads)
    if session is None:
        raise ProviderUnavailableError(provider, cause)
    return OpenedSession(session, provider, tuple(session.get_providers()), intra_op_threads=threads)


def _create_auto_session(onnxruntime: Any, model_source: str | bytes, threads: int) -> OpenedSession:
    note = ""
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        session, cause = _try_gpu_session(onnxruntime, model_source, "cuda", threads)
        if session is not None:
            return OpenedSession(session, "cuda", tuple(session.get_providers()), "auto chose CUDA", threads)
        note = f"auto chose CPU: CUDA is not usable ({cause})"
    else:
        note = "auto chose CPU: this onnxruntime build has no CUDA provider"
    session = _new_session(onnxruntime, model_source, ["CPUExecutionProvider"], threads)
    return OpenedSession(session, "cpu", tuple(session.get_providers()), note, threads)


def _try_gpu_session(
    onnxruntime: Any, model_source: str | bytes, provider: str, threads: int
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


def _new_session(onnxruntime: Any, model_source: str | bytes, providers: list[Any], threads: int) -> Any:
    return onnxruntime.InferenceSession(
        model_source, sess_options=session_options(onnxruntime, threads), providers=providers
    )


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


def summarize_load_failure(log: str) -> str:
    """The essential facts from onnxruntime's log of a failed GPU provider load, on one short line ("" if none).

    E.g. ``libcublasLt.so.13: cannot open shared object file; this onnxruntime needs cuDNN 9.* and CUDA 13.*``.
    """
    text = _ANSI_ESCAPE.sub("", log)
    facts = []
    library_error = re.search(r"with error: ([^\n]+)", text)
    if library_error:
        facts.append(library_error.group(1).strip().removesuffix(": No such file or directory"))
    elif "install TensorRT libraries" in text:
        facts.append("TensorRT libraries (libnvinfer) not found")
    else:
        for line in text.splitlines():
            if _LOAD_FAILURE_PATTERN.search(line):
                facts.append(_LOG_PREFIX.sub("", line).strip())
                break
    requirement = re.search(r"Require (cuDNN \S+ and CUDA [\d.*]+)", text)
    if requirement:
        facts.append(f"this onnxruntime needs {requirement.group(1).rstrip('.')}")
    return "; ".join(" ".join(fact.split())[:200] for fact in facts)


def probe_model_bytes() -> bytes:
    """A minimal valid ONNX model (float[1] -> Identity -> float[1]), hand-encoded so no `onnx` package is needed.

    Used to check which providers really load without needing the user's model.
    """

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            low, value = value & 0x7F, value >> 7
            out.append(low | (0x80 if value else 0))
            if not value:
                return bytes(out)

    def length_delimited(number: int, payload: bytes) -> bytes:
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    def integer(number: int, value: int) -> bytes:
        return varint(number << 3) + varint(value)

    shape = length_delimited(1, integer(1, 1))  # TensorShapeProto.dim { dim_value: 1 }
    tensor_type = length_delimited(1, integer(1, 1) + length_delimited(2, shape))  # elem_type FLOAT, shape

    def value_info(name: bytes) -> bytes:
        return length_delimited(1, name) + length_delimited(2, tensor_type)

    node = length_delimited(1, b"x") + length_delimited(2, b"y") + length_delimited(4, b"Identity")
    graph = (
        length_delimited(1, node)
        + length_delimited(2, b"probe")
        + length_delimited(11, value_info(b"x"))
        + length_delimited(12, value_info(b"y"))
    )
    opset = length_delimited(1, b"") + integer(2, 13)
    return integer(1, 8) + length_delimited(8, opset) + length_delimited(7, graph)
