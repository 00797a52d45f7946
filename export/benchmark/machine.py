"""The machine a benchmark ran on: CPU model, cores, threads used, GPU, library versions (printed above the table)."""

from __future__ import annotations

import contextlib
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from cifar_edge.runtime.providers.diagnosis import visible_nvidia_gpu
from cifar_edge.runtime.providers.strict import usable_cpu_count

_PACKAGES = ("cifar-edge", "numpy", "torch", "onnxruntime", "onnxruntime-gpu", "onnx", "pillow")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return " ".join(line.split(":", 1)[1].split())
    return platform.processor() or platform.machine() or "unknown"


def gpu_description() -> str | None:
    """The CUDA device torch sees (name and memory), else whatever NVIDIA driver is visible, else None."""
    try:
        import torch

        if torch.cuda.is_available():
            properties = torch.cuda.get_device_properties(0)
            return f"{properties.name} ({properties.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    except Exception:  # no torch, or a broken CUDA install: fall back to the driver files
        pass
    return visible_nvidia_gpu()


def machine_info(threads: int) -> dict[str, Any]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    providers: list[str] = []
    with contextlib.suppress(ImportError):
        import onnxruntime

        providers = list(onnxruntime.get_available_providers())
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpu_count(),
        "threads": threads,
        "gpu": gpu_description(),
        "platform": platform.platform(),
        "onnxruntime_providers": providers,
        "versions": versions,
    }


def describe_machine(info: dict[str, Any]) -> list[str]:
    """Human lines for the top of the table."""
    versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items() if version)
    return [
        f"CPU: {info['cpu']} ({info['usable_cpus']} usable of {info['logical_cpus']} logical cores); "
        f"threads per engine: {info['threads']} (torch and onnxruntime alike)",
        f"GPU: {info['gpu'] or 'none visible'}",
        f"platform: {info['platform']}",
        f"versions: {versions}",
    ]
