"""Strict provider control on this CPU-only machine, and the diagnosis of why a GPU provider is not active."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import onnxruntime
import pytest
from typer.testing import CliRunner

from cifar_edge.runtime import Classifier, ProviderUnavailableError
from cifar_edge.runtime.hardware import ProviderEnvironment, diagnose_unavailable, probe_model_bytes
from cifar_edge.runtime.infer.cli import app
from cifar_edge.runtime.session import (
    capture_native_output,
    create_session,
    default_intra_op_threads,
    usable_cpu_count,
)

runner = CliRunner()
CUDA_BUILT_IN = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
cpu_only = pytest.mark.skipif(CUDA_BUILT_IN, reason="needs the CPU-only onnxruntime (a GPU build is installed)")


@cpu_only
@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_gpu_provider_on_cpu_only_onnxruntime_exits_3_naming_the_cause(
    colour_model: Path, red_png: Path, provider: str
) -> None:
    result = runner.invoke(app, [str(red_png), "--model", str(colour_model), "--provider", provider])
    assert result.exit_code == 3, result.output
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: --provider {provider} is unavailable: the installed onnxruntime")
    assert "is CPU-only" in line and "pip install 'cifar-edge[gpu]'" in line
    with pytest.raises(ProviderUnavailableError, match="CPU-only") as raised:
        Classifier(colour_model, provider=provider)
    assert raised.value.requested == provider


def test_auto_runs_on_cpu_and_says_so(colour_model: Path, red_png: Path) -> None:
    result = runner.invoke(app, [str(red_png), "--model", str(colour_model), "--provider", "auto", "--json"])
    assert result.exit_code == 0, result.output
    assert '"label": "red"' in result.stdout
    provider_line = next(line for line in result.stderr.splitlines() if line.startswith("provider:"))
    if CUDA_BUILT_IN:
        assert "CUDA" in provider_line
    else:
        assert provider_line.startswith("provider: CPUExecutionProvider (auto chose CPU")


def test_cpu_session_is_cpu_only_and_uses_the_thread_setting(colour_model: Path) -> None:
    with Classifier(colour_model, provider="cpu", intra_op_threads=1) as classifier:
        assert classifier.providers == ("CPUExecutionProvider",)
        assert classifier.provider == "cpu"
        assert classifier.session.get_session_options().intra_op_num_threads == 1
    assert default_intra_op_threads() == usable_cpu_count()  # every core: both scale model-only, decoding shares
    opened = create_session(probe_model_bytes(), "cpu")
    assert opened.intra_op_threads == default_intra_op_threads()


def test_unknown_provider_is_a_usage_error(colour_model: Path, red_png: Path) -> None:
    result = runner.invoke(app, [str(red_png), "--model", str(colour_model), "--provider", "gpu"])
    assert result.exit_code == 2
    with pytest.raises(ValueError, match="provider must be one of"):
        create_session(probe_model_bytes(), "gpu")


# -- diagnosis: each likely cause, from the facts gathered about the machine ------------------------------------

GPU_BUILD = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def test_cause_cpu_only_package() -> None:
    environment = ProviderEnvironment({"onnxruntime": "1.32.0"}, ("CPUExecutionProvider",), gpu="NVIDIA driver 580")
    assert "onnxruntime 1.32.0 is CPU-only" in diagnose_unavailable("cuda", environment)


def test_cause_both_packages_installed() -> None:
    environment = ProviderEnvironment(
        {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"}, ("CPUExecutionProvider",), gpu="NVIDIA driver 580"
    )
    cause = diagnose_unavailable("cuda", environment)
    assert "onnxruntime 1.32.0 and onnxruntime-gpu 1.31.1 are both installed" in cause
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in cause


def test_cause_no_gpu_visible() -> None:
    environment = ProviderEnvironment({"onnxruntime-gpu": "1.31.1"}, GPU_BUILD, gpu=None)
    assert diagnose_unavailable("cuda", environment).startswith("no NVIDIA GPU or driver is visible")


# What onnxruntime-gpu 1.31.1 logged on this machine (no GPU, no CUDA libraries) before falling back to the CPU.
REAL_FALLBACK_LOG = (
    "Failed to load libcublasLt.so.13: libcublasLt.so.13: cannot open shared object file: No such file or directory\n"
    "\x1b[1;31m2026-11-27 20:19:32.558847566 [E:onnxruntime:Default, provider_bridge_ort.cc:2458 operator()] "
    "/onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:2043 onnxruntime::Provider& "
    "onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : Failed to load library "
    "/tmp/gpuvenv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime_providers_cuda.so with error: "
    "libcublasLt.so.13: cannot open shared object file: No such file or directory\n\x1b[m\n"
    "\x1b[0;93m2026-11-27 20:19:32.558896839 [W:onnxruntime:Default, onnxruntime_pybind_state.cc:1295 "
    "CreateExecutionProviderFactoryInstance] Failed to create CUDAExecutionProvider. Require cuDNN 9.* and CUDA 13.*. "
    "Please install all dependencies as mentioned in the GPU requirements page\x1b[m\n"
)


def test_cause_library_failed_to_load() -> None:
    environment = ProviderEnvironment({"onnxruntime-gpu": "1.31.1"}, GPU_BUILD, gpu="NVIDIA driver 580")
    cause = diagnose_unavailable("cuda", environment, REAL_FALLBACK_LOG)
    assert cause.startswith(
        "a CUDA/cuDNN library failed to load (libcublasLt.so.13: cannot open shared object file; "
        "this onnxruntime needs cuDNN 9.* and CUDA 13.*)"
    )
    assert "\x1b" not in cause and "\n" not in cause
    trt_log = "Please install TensorRT libraries as mentioned in the GPU requirements page"
    assert diagnose_unavailable("tensorrt", environment, trt_log).startswith(
        "a TensorRT library failed to load (TensorRT libraries (libnvinfer) not found)"
    )


def test_cause_no_gpu_mentions_the_library_too() -> None:
    environment = ProviderEnvironment({"onnxruntime-gpu": "1.31.1"}, GPU_BUILD, gpu=None)
    cause = diagnose_unavailable("cuda", environment, REAL_FALLBACK_LOG)
    assert cause.startswith("no NVIDIA GPU or driver is visible")
    assert cause.endswith(
        "also: libcublasLt.so.13: cannot open shared object file; this onnxruntime needs cuDNN 9.* and CUDA 13.*"
    )


def test_cause_silent_fallback_without_a_log() -> None:
    environment = ProviderEnvironment({"onnxruntime-gpu": "1.31.1"}, GPU_BUILD, gpu="NVIDIA driver 580")
    assert "fell back to the CPU" in diagnose_unavailable("cuda", environment, "")


def test_gpu_build_without_tensorrt() -> None:
    environment = ProviderEnvironment(
        {"onnxruntime-gpu": "1.31.1"}, ("CUDAExecutionProvider", "CPUExecutionProvider"), gpu="NVIDIA"
    )
    assert "built without TensorrtExecutionProvider" in diagnose_unavailable("tensorrt", environment)


def test_native_stderr_is_captured_and_restored(capfd: pytest.CaptureFixture[str]) -> None:
    with capture_native_output() as captured:
        os.write(2, b"native: libcublasLt.so.12: cannot open shared object file\n")
        print("python side", file=sys.stderr)
    assert "libcublasLt.so.12" in captured[0] and "python side" in captured[0]
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
