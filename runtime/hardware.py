"""What this machine offers the runtime: onnxruntime's packages and providers, a visible NVIDIA GPU, the CPU's int8
instructions, and, from those facts, one line on why a GPU execution provider is not active.

Also a tiny hand-encoded ONNX model, so provider checks need neither the user's model nor the ``onnx`` package.

Int8 on the CPU: without VNNI (or AMX), x86 int8 kernels add pairs of u8 x s8 products in saturating int16
(VPMADDUBSW), which can clip with full 8-bit weights; onnxruntime's quantization docs recommend 7-bit weights
(``reduce_range``) there.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The provider names cifar-infer takes, and what onnxruntime calls each.
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


@dataclass(frozen=True)
class ProviderEnvironment:
    """The facts a diagnosis rests on (gathered by :func:`probe_environment`, or written out in tests)."""

    # Installed onnxruntime distributions and their versions.
    packages: dict[str, str] = field(default_factory=dict)
    # onnxruntime.get_available_providers(): what the installed build contains.
    built_in: tuple[str, ...] = ()
    # A short description of the visible NVIDIA GPU/driver, or None when nothing is visible.
    gpu: str | None = None


def installed_onnxruntime_packages() -> dict[str, str]:
    import importlib.metadata  # on use: importing it would cost every cifar-infer start about 15 ms

    found = {}
    for name in ONNXRUNTIME_DISTRIBUTIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


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


# Flags (as /proc/cpuinfo spells them) that matter for int8 and bf16 kernels.
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16")
# Any of these sums int8 products in int32 without saturating.
DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, object]:
    """{"model": ..., "machine": ..., "flags": [the INT8_FLAGS this CPU has]}; flags None where unknown."""
    model, flags = None, None
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        if key.strip() == "flags" and flags is None:
            present = set(value.split())
            flags = [flag for flag in INT8_FLAGS if flag in present]
    return {"model": model or platform.processor() or None, "machine": platform.machine(), "flags": flags}


def has_int8_dot_product(features: dict[str, object]) -> bool | None:
    """True/False on x86 where the flags are known; None when they are not (other architectures, no /proc)."""
    flags = features.get("flags")
    if not isinstance(flags, list):
        return None
    return any(flag in flags for flag in DOT_PRODUCT_FLAGS)


def int8_warning(provenance: dict[str, object] | None, features: dict[str, object] | None = None) -> str | None:
    """One line when an int8 model quantized with 8-bit weights (for VNNI/AMX) runs on a CPU without them."""
    quantization = (provenance or {}).get("quantization")
    if not isinstance(quantization, dict) or quantization.get("reduce_range") is not False:
        return None
    if has_int8_dot_product(features or cpu_features()) is not False:
        return None
    return (
        "int8 with 8-bit weights was quantized for a CPU with VNNI/AMX; this CPU has neither, so its int8 sums may "
        "saturate and cost accuracy: re-export with --quantize int8 on a CPU like this one (7-bit weights)"
    )
