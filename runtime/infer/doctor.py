"""``cifar-infer --doctor``: what is installed, what really loads, and what the chosen model says about itself.

The exit code is the one classification would hit: 0 healthy, 2 no usable model or no onnxruntime,
3 the requested provider does not load.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from typing import Any, TextIO

from cifar_edge.runtime.classifier import Classifier
from cifar_edge.runtime.common.command import ExitCode
from cifar_edge.runtime.common.names import RUNS_DIR
from cifar_edge.runtime.hardware import (
    EXECUTION_PROVIDERS,
    installed_onnxruntime_packages,
    probe_model_bytes,
    visible_nvidia_gpu,
)
from cifar_edge.runtime.model_file import ModelError, describe_passes, passes_per_image, resolve_model_path
from cifar_edge.runtime.session import ProviderUnavailableError, create_session

# Shared libraries a GPU onnxruntime needs (driver, CUDA runtime and maths libraries, cuDNN, TensorRT).
GPU_LIBRARIES = ("cuda", "cudart", "cublas", "cublasLt", "cufft", "curand", "cudnn", "nvinfer")


def run_doctor(
    model: str | None = None,
    provider: str = "auto",
    *,
    as_json: bool = False,
    runs_dir: str = RUNS_DIR,
    stdout: TextIO | None = None,
) -> int:
    report = collect_report(model, provider, runs_dir=runs_dir)
    stdout = stdout or sys.stdout
    if as_json:
        stdout.write(json.dumps(report, sort_keys=True, allow_nan=False) + "\n")
    else:
        _print_report(report, stdout)
    return int(report["exit_code"])


def collect_report(model: str | None = None, provider: str = "auto", *, runs_dir: str = RUNS_DIR) -> dict[str, Any]:
    problems: list[str] = []
    exit_code = ExitCode.OK
    packages = installed_onnxruntime_packages()
    if len(packages) > 1:
        problems.append(
            "several onnxruntime packages are installed (" + ", ".join(sorted(packages)) + "); they overwrite each "
            "other: pip uninstall them all, then install exactly one"
        )
    runtime_info: dict[str, Any] = {"packages": packages, "conflict": len(packages) > 1}
    providers_info: dict[str, Any] = {"requested": provider}
    try:
        import onnxruntime
    except ImportError as error:
        runtime_info["import_error"] = str(error)
        problems.append("onnxruntime cannot be imported: pip install 'cifar-edge[cpu]' or 'cifar-edge[gpu]'")
        exit_code = ExitCode.USAGE
    else:
        runtime_info.update(
            version=onnxruntime.__version__,
            location=os.path.dirname(onnxruntime.__file__),
            build_cuda_version=getattr(onnxruntime, "cuda_version", "") or None,
        )
        providers_info["built_in"] = list(onnxruntime.get_available_providers())
        with contextlib.suppress(Exception):
            providers_info["devices"] = [
                f"{device.ep_name}: {device.device.type.name} ({device.device.vendor})"
                for device in onnxruntime.get_ep_devices()
            ]
        providers_info["loads"] = _provider_load_checks(providers_info["built_in"], provider)
        if provider not in ("auto", "cpu") and providers_info["loads"].get(provider) != "loads":
            problems.append(f"--provider {provider}: {providers_info['loads'].get(provider)}")
            exit_code = ExitCode.PROVIDER_UNAVAILABLE
    model_info = _model_report(model, runs_dir)
    if "error" in model_info:
        problems.append(model_info["error"])
        if exit_code == ExitCode.OK:
            exit_code = ExitCode.USAGE
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "onnxruntime": runtime_info,
        "providers": providers_info,
        "gpu": _gpu_report(),
        "gpu_libraries": _find_gpu_libraries(),
        "model": model_info,
        "problems": problems,
        "exit_code": exit_code,
    }


def _provider_load_checks(built_in: list[str], requested: str) -> dict[str, str]:
    checks = {}
    probe = probe_model_bytes()
    for short_name, provider_name in EXECUTION_PROVIDERS.items():
        if provider_name not in built_in and short_name != requested:
            continue
        try:
            create_session(probe, short_name, intra_op_threads=1)
            checks[short_name] = "loads"
        except ProviderUnavailableError as error:
            checks[short_name] = f"does not load: {error.cause}"
        except Exception as error:
            checks[short_name] = f"does not load: {' '.join(str(error).split())[:200]}"
    return checks


def _model_report(model: str | None, runs_dir: str) -> dict[str, Any]:
    try:
        resolved = resolve_model_path(model, runs_dir)
    except ModelError as error:
        return {"error": str(error)}
    info: dict[str, Any] = {"path": str(resolved.path), "origin": resolved.origin}
    try:
        # The contract summary does not depend on the provider: read it through the CPU provider.
        with Classifier(resolved.path, "cpu", intra_op_threads=1) as classifier:
            contract = classifier.contract
            info.update(
                bytes=resolved.path.stat().st_size,
                sha256=classifier.sha256,
                input=f"{classifier.io.input_name} {_shape(classifier.io.input_shape)} {classifier.io.input_type}",
                output=f"{classifier.io.output_name} {_shape(classifier.io.output_shape)}",
                input_form=contract.input_form,
                input_description=classifier.model_input.describe(),
                contract=contract.to_dict(),
                provenance=classifier.provenance,
                passes_per_image=passes_per_image(classifier.provenance),
            )
    except (ModelError, ProviderUnavailableError) as error:
        info["error"] = str(error)
    return info


def _shape(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _gpu_report() -> dict[str, Any]:
    report: dict[str, Any] = {"visible": visible_nvidia_gpu()}
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            output = subprocess.run(
                [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=15,
                check=False,
            )
            report["nvidia_smi"] = [line.strip() for line in output.stdout.splitlines() if line.strip()] or [
                output.stderr.strip()[:200]
            ]
        except (OSError, subprocess.SubprocessError) as error:
            report["nvidia_smi"] = [f"failed: {error}"]
    return report


def _find_gpu_libraries() -> dict[str, list[str]]:
    """Where each GPU library is found: the loader's cache, LD_LIBRARY_PATH, and nvidia-* Python packages."""
    directories = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]
    site_packages = sysconfig.get_paths()["purelib"]
    directories += sorted(glob.glob(os.path.join(site_packages, "nvidia", "*", "lib")))
    found: dict[str, list[str]] = {}
    for name in GPU_LIBRARIES:
        locations = []
        from_loader = ctypes.util.find_library(name)
        if from_loader:
            locations.append(from_loader)
        for directory in directories:
            locations += sorted(glob.glob(os.path.join(directory, f"lib{name}.so*")))[:1]
        found[f"lib{name}"] = locations
    return found


def _print_report(report: dict[str, Any], stdout: TextIO) -> None:
    # Plain "key  value" lines: readable, greppable, and never wrapped mid-path on narrow terminals.
    rows: list[tuple[str, str]] = []
    runtime = report["onnxruntime"]
    packages = ", ".join(f"{name} {version}" for name, version in runtime["packages"].items()) or "none"
    rows.append(("python", f"{report['python']} on {report['platform']}"))
    rows.append(("onnxruntime packages", packages + ("  [CONFLICT]" if runtime["conflict"] else "")))
    if "version" in runtime:
        cuda = f", built for CUDA {runtime['build_cuda_version']}" if runtime.get("build_cuda_version") else ""
        rows.append(("onnxruntime imported", f"{runtime['version']} from {runtime['location']}{cuda}"))
    providers = report["providers"]
    rows.append(("providers built in", ", ".join(providers.get("built_in", [])) or "-"))
    rows += [(f"provider {name}", state) for name, state in providers.get("loads", {}).items()]
    gpu = report["gpu"]
    rows.append(("GPU", "; ".join(gpu.get("nvidia_smi", [])) or gpu["visible"] or "none visible"))
    rows += [(library, ", ".join(locations) or "not found") for library, locations in report["gpu_libraries"].items()]
    model = report["model"]
    if "path" in model:
        rows.append(("model", f"{model['path']} (from {model['origin']})"))
    if "contract" in model:
        contract = model["contract"]
        rows.append(("model sha256", f"{model['sha256']} ({model['bytes']:,} bytes)"))
        rows.append(("model input/output", f"{model['input']} -> {model['output']}"))
        rows.append(("input form", f"{model['input_form']}: {model['input_description']}"))
        rows.append(("classes", f"{len(contract['class_names'])}: " + ", ".join(contract["class_names"])))
        rows.append(
            (
                "preprocessing",
                f"{contract['image_size'][0]}x{contract['image_size'][1]} {contract['resize_method']}, "
                f"mean {contract['mean']}, std {contract['std']}, alpha on {contract['alpha_background']}",
            )
        )
        rows.append(("passes per image", describe_passes(model.get("provenance"))))
        provenance = model.get("provenance") or {}
        if provenance:
            rows.append(("provenance", ", ".join(f"{k}={_short(v)}" for k, v in sorted(provenance.items()))))
    width = max(len(key) for key, _ in rows) + 2
    lines = [f"{key:<{width}}{value}" for key, value in rows]
    if report["problems"]:
        lines.append("problems:")
        lines += [f"  - {problem}" for problem in report["problems"]]
    else:
        lines.append("no problems found")
    stdout.write("\n".join(lines) + "\n")


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."
