"""The efficiency columns of ``cifar-bench``: FLOPs per image, achieved GFLOP/s and the share of this machine's peak.

Each ONNX row's FLOPs are counted from its own graph; PyTorch and TorchScript rows compute the same function, so
they take the count of the run's fp32 ONNX export when there is one from the current weights (else None).
Achieved GFLOP/s = MFLOP per image x images/s at the throughput batch / 1000. The share of peak is only given for
CPU rows (the peak is measured on the CPU): fp32 and fp16 rows against the fp32 peak, int8 rows against the int8
peak when it was measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifar_edge.export.benchmark.artifacts import VARIANTS, Artifact, source_weights_sha256
from cifar_edge.export.benchmark.flops import count_flops
from cifar_edge.export.benchmark.peak import measure_peak
from cifar_edge.runtime.common.command import first_line

FP32_ONNX = VARIANTS["onnx-fp32"]


def count_file(path: Path) -> dict[str, Any]:
    """``count_flops`` of an ONNX file, with the file named; a graph it cannot count gives None and the reason."""
    import onnx

    try:
        counted = count_flops(onnx.load(str(path), load_external_data=False))
    except Exception as error:  # a graph shape inference cannot follow: the row still has its other columns
        return {"file": str(path), "mflop_per_image": None, "reason": f"cannot count: {first_line(error)}"}
    return {"file": str(path), **counted}


def variant_flops(artifacts: dict[str, Artifact], run_dir: Path, weights_sha256: str) -> dict[str, dict[str, Any]]:
    """bench.json's ``flops``: the count behind each variant's ``mflop_per_image`` (which file, breakdown)."""
    fp32 = artifacts.get(FP32_ONNX.key)
    fp32_path = fp32.path if fp32 is not None else run_dir / FP32_ONNX.file_name
    fp32_current = fp32.usable if fp32 is not None else fp32_path.is_file()
    if fp32 is None and fp32_current:  # not benchmarked in this run: count it only if it has the current weights
        fp32_current = source_weights_sha256(fp32_path, "onnx") == weights_sha256
    counts: dict[str, dict[str, Any]] = {}
    for key, artifact in artifacts.items():
        if artifact.variant.engine == "onnx":
            counts[key] = count_file(artifact.path) if artifact.usable else {"mflop_per_image": None}
        elif fp32_current:
            counts[key] = count_file(fp32_path)
        else:
            counts[key] = {"mflop_per_image": None, "reason": f"no current {FP32_ONNX.file_name} to count"}
    return counts


def peak_for(precision: str, provider: str, machine_peak: dict[str, Any]) -> float | None:
    """The peak a row is compared against; None for non-CPU rows and unmeasured peaks."""
    if provider != "cpu":
        return None
    return machine_peak["int8" if precision == "int8" else "fp32"].get("gflops")


def fill_efficiency(rows: list[Any], flops: dict[str, dict[str, Any]], machine_peak: dict[str, Any]) -> None:
    """Set each row's mflop_per_image, gflops, peak_gflops and percent_of_peak (None where not measurable)."""
    for row in rows:
        row.mflop_per_image = flops.get(row.variant, {}).get("mflop_per_image")
        row.peak_gflops = peak_for(row.precision, row.provider, machine_peak)
        if row.mflop_per_image is None or row.throughput_ips is None:
            continue
        gflops = row.mflop_per_image * row.throughput_ips / 1000.0
        row.gflops = round(gflops, 4)
        if row.peak_gflops:
            row.percent_of_peak = round(100.0 * gflops / row.peak_gflops, 3)


def add_efficiency(
    rows: list[Any], artifacts: dict[str, Artifact], run_dir: Path, weights_sha256: str, threads: int
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Measure the machine peak, count every variant's FLOPs and fill the rows; bench.json's machine_peak, flops."""
    machine_peak = measure_peak(threads)
    flops = variant_flops(artifacts, run_dir, weights_sha256)
    fill_efficiency(rows, flops, machine_peak)
    return machine_peak, flops
