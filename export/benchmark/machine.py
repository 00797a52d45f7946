"""The machine a benchmark ran on: CPU model, cores, threads used, GPU, library versions (printed above the table),
and its attainable compute, measured in the benchmark's own run: one big convolution in onnxruntime.

The rows' "% of peak" divides their achieved GFLOP/s by what the same engine reaches, with the same threads and
session options, on a convolution large enough to be compute-bound: fp32 with a float Conv, int8 with a
QLinearConv. It is a practical peak (what onnxruntime's kernels attain here), not the CPU's datasheet figure.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.hardware import visible_nvidia_gpu
from cifar_edge.runtime.session import usable_cpu_count

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


# Batch, channels in = out, spatial size, kernel: a 3x3 conv on a 256-channel map is compute-bound on any CPU.
SHAPE = {"batch": 4, "channels": 256, "size": 32, "kernel": 3}
# At most this many timed calls per precision, and no new call once this much time is spent (the best counts).
CALLS = 5
BUDGET_S = 0.6


def conv_flops(shape: dict[str, int] = SHAPE) -> int:
    """2 x multiply-accumulates of the peak convolution (same padding: output size = input size)."""
    channels, size, kernel = shape["channels"], shape["size"], shape["kernel"]
    return 2 * shape["batch"] * channels * size * size * channels * kernel * kernel


def _conv_model(shape: dict[str, int], int8: bool) -> tuple[onnx.ModelProto, np.ndarray]:
    """The peak graph and an input for it; int8: QLinearConv with uint8 activations and int8 weights."""
    batch, channels, size, kernel = shape["batch"], shape["channels"], shape["size"], shape["kernel"]
    rng = np.random.default_rng(0)
    dims = [batch, channels, size, size]
    pads = [kernel // 2] * 4
    if not int8:
        weight = numpy_helper.from_array(rng.standard_normal((channels, channels, kernel, kernel), np.float32), "w")
        node = helper.make_node("Conv", ["x", "w"], ["y"], pads=pads)
        element, example = TensorProto.FLOAT, rng.standard_normal(dims, np.float32)
        initializers = [weight]
    else:
        # uint8 activations x int8 weights: onnxruntime's fast integer path (int8 activations in a plain
        # QLinearConv took a much slower kernel on x86)
        initializers = [
            numpy_helper.from_array(rng.integers(-127, 128, (channels, channels, kernel, kernel), dtype=np.int8), "w"),
            numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
            numpy_helper.from_array(np.array(128, np.uint8), "x_zero"),
            numpy_helper.from_array(np.full((channels,), 0.01, np.float32), "w_scale"),
            numpy_helper.from_array(np.zeros((channels,), np.int8), "w_zero"),
            numpy_helper.from_array(np.array(0.5, np.float32), "y_scale"),
            numpy_helper.from_array(np.array(128, np.uint8), "y_zero"),
        ]
        inputs = ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale", "y_zero"]
        node = helper.make_node("QLinearConv", inputs, ["y"], pads=pads)
        element, example = TensorProto.UINT8, rng.integers(0, 256, dims, dtype=np.uint8)
    graph = helper.make_graph(
        [node],
        "peak",
        [helper.make_tensor_value_info("x", element, dims)],
        [helper.make_tensor_value_info("y", element, dims)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), example


def _best_call_s(session: Any, example: np.ndarray) -> tuple[float, int]:
    """Fastest of up to CALLS timed calls after one warm-up, stopping early once BUDGET_S is spent."""
    session.run(None, {"x": example})
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < CALLS and (not times or time.perf_counter() - started < BUDGET_S):
        begin = time.perf_counter()
        session.run(None, {"x": example})
        times.append(time.perf_counter() - begin)
    return min(times), len(times)


def measure_one(threads: int, int8: bool, shape: dict[str, int] = SHAPE) -> dict[str, Any]:
    """One precision's peak: GFLOP/s (int8: GOP/s) of the peak conv, or None with the reason it could not run."""
    from cifar_edge.runtime import session  # looked up at call time: tests replace create_session

    op = "QLinearConv" if int8 else "Conv"
    result: dict[str, Any] = {"op": op, "gflops": None, "reason": None}
    started = time.perf_counter()
    try:
        model, example = _conv_model(shape, int8)
        opened = session.create_session(model.SerializeToString(), "cpu", intra_op_threads=threads).session
        best, calls = _best_call_s(opened, example)
    except Exception as error:  # e.g. no integer kernel in this onnxruntime build: no peak, say why
        result["reason"] = f"{op} did not run: {first_line(error)}"
        return result
    result.update(gflops=round(conv_flops(shape) / best / 1e9, 3), best_call_s=round(best, 6), calls=calls)
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def measure_peak(threads: int) -> dict[str, Any]:
    """bench.json's ``machine_peak``: fp32 and int8 peaks and how they were measured."""
    return {
        "engine": "onnxruntime CPUExecutionProvider, the rows' session options",
        "threads": threads,
        "shape": {**SHAPE, "layout": "NCHW", "padding": "same"},
        "flop_per_call": conv_flops(),
        "method": f"best of up to {CALLS} calls after one warm-up, at most {BUDGET_S:g} s of calls per precision",
        "fp32": measure_one(threads, int8=False),
        "int8": measure_one(threads, int8=True),
    }
