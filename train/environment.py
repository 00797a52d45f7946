"""The process a run happens in: device choice, CPU threads, malloc, Ctrl-C, and the versions recorded in run.json.

Ctrl-C during training: the first SIGINT (or SIGTERM, which job schedulers send before killing a job) asks the loop
to stop after the current step (it then saves and exits 130); a second one aborts at once, which is still safe
because every file is written atomically.
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import threading
from collections.abc import Callable
from importlib import metadata
from types import FrameType, TracebackType
from typing import Any

import torch


def available_cpus() -> int:
    """Cores this process may run on (respects CPU affinity and container limits where the OS exposes them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_device(spec: str) -> torch.device:
    """ "auto" | "cpu" | "cuda" | "cuda:N" -> a usable torch.device, or ValueError saying why not."""
    if spec == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {spec}: CUDA is not available on this machine; use --device cpu")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware (emulated bf16 is usually slower than float32)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:  # torch exposes the CPU feature checks only privately; a missing one means "not known to be native"
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def resolve_precision(spec: str, device: torch.device) -> torch.dtype:
    """ "auto" | "bf16" | "fp32" -> the dtype training steps compute in (see TrainConfig.precision)."""
    if spec == "bf16" or (spec == "auto" and native_bf16(device)):
        return torch.bfloat16
    return torch.float32


def configure_threads(device: torch.device, threads: int | None, processes: int = 1) -> int:
    """Use every core on the CPU (measured fastest here), shared out when ``processes`` training processes run on
    this machine (torchrun); on CUDA the CPU only feeds the GPU, leave torch's pick."""
    if threads is not None:
        torch.set_num_threads(threads)
    elif device.type == "cpu":
        torch.set_num_threads(max(1, available_cpus() // max(1, processes)))
    return torch.get_num_threads()


# glibc mallopt parameters (malloc.h) and the values tune_malloc sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest allowed on 64-bit: every block up to 32 MiB is reused
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024  # free memory kept at the heap's top before any is handed back
USER_MALLOC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def tune_malloc() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the OS; True if it did.

    A CPU training step allocates and frees the same tens of megabytes of activations every step. By default
    glibc serves big blocks with fresh mmap()s and trims the heap's free top back to the OS, so every step
    page-faults and zero-fills that memory again. Keeping it (the effect jemalloc or tcmalloc give, which PyTorch's
    CPU performance guides recommend) makes the default recipe's training step faster (bench/malloc_tuning.py;
    docs/history.md, 'malloc'). The cost: the process keeps its peak memory until it exits. Process-wide and
    permanent; skipped off glibc and when the user set any MALLOC_* tunable in the environment.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in USER_MALLOC_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mmap_set = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    trim_set = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    return bool(mmap_set and trim_set)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_model() or platform.processor() or platform.machine() or "CPU"


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def describe_environment(device: torch.device, precision: torch.dtype = torch.float32) -> dict[str, Any]:
    """JSON-ready facts about the software and hardware a run used."""
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cifar_edge": _version("cifar-edge"),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "numpy": _version("numpy"),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "precision": "bf16" if precision == torch.bfloat16 else "fp32",
        "cpu_count": available_cpus(),
    }
    if device.type == "cpu":
        facts["cpu_capability"] = torch.backends.cpu.get_cpu_capability()  # the vector ISA ATen's kernels use
        if "ONEDNN_MAX_CPU_ISA" in os.environ:  # a cap on oneDNN's kernels (used to stand in for an older CPU)
            facts["onednn_max_cpu_isa"] = os.environ["ONEDNN_MAX_CPU_ISA"]
    if device.type == "cuda":
        facts["cuda"] = torch.version.cuda
        facts["cudnn"] = torch.backends.cudnn.version()
    return facts


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Context manager that turns the first SIGINT/SIGTERM into a flag the training loop polls after every step."""

    def __init__(self, on_first_signal: Callable[[], None] | None = None) -> None:
        self.requested = False
        self._on_first_signal = on_first_signal
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        # Signal handlers can only be installed from the main thread; elsewhere Ctrl-C keeps its default meaning.
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in STOP_SIGNALS}
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)  # type: ignore[arg-type]
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self._on_first_signal is not None:
            self._on_first_signal()
