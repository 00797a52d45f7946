"""The efficiency columns: MFLOP per image, achieved GFLOP/s and % of the machine peak, in bench.json and the table."""

from __future__ import annotations

import pytest
from evalbench_fixtures import (  # noqa: F401  (session fixtures)
    Benched,
    benched_run_fixture,
    eval_images_fixture,
    eval_run_fixture,
)

from cifar_edge.export.benchmark import machine
from cifar_edge.export.benchmark.flops import fill_efficiency
from cifar_edge.export.benchmark.measure import Row
from cifar_edge.export.benchmark.report import peak_line

EFFICIENCY = ("mflop_per_image", "gflops", "peak_gflops", "percent_of_peak")


def _peak(fp32: float | None, int8: float | None) -> dict:
    return {"fp32": {"gflops": fp32}, "int8": {"gflops": int8}}


def test_each_row_is_compared_with_the_peak_of_its_precision_on_the_cpu_only() -> None:
    rows = [Row("onnx-fp32", "ONNX", "fp32", "cpu"), Row("onnx-int8", "ONNX", "int8", "cpu")]
    rows += [Row("onnx-fp32", "ONNX", "fp32", "cuda"), Row("onnx-fp16", "ONNX", "fp16", "cpu")]
    for row in rows:
        row.throughput_ips = 2000.0
    flops = {"onnx-fp32": {"mflop_per_image": 5.0}, "onnx-int8": {"mflop_per_image": 5.0}}
    fill_efficiency(rows, {**flops, "onnx-fp16": {"mflop_per_image": None}}, _peak(50.0, 200.0))
    fp32, int8, cuda, fp16 = rows
    assert fp32.gflops == int8.gflops == cuda.gflops == 10.0  # 5 MFLOP x 2000 img/s
    assert (fp32.peak_gflops, fp32.percent_of_peak) == (50.0, 20.0)
    assert (int8.peak_gflops, int8.percent_of_peak) == (200.0, 5.0)
    assert cuda.peak_gflops is None and cuda.percent_of_peak is None
    assert fp16.peak_gflops == 50.0 and fp16.gflops is None and fp16.percent_of_peak is None


def test_an_unmeasured_int8_peak_leaves_the_share_empty() -> None:
    row = Row("onnx-int8", "ONNX", "int8", "cpu", throughput_ips=100.0)
    fill_efficiency([row], {"onnx-int8": {"mflop_per_image": 1.0}}, _peak(50.0, None))
    assert row.gflops == 0.1 and row.peak_gflops is None and row.percent_of_peak is None


def test_a_peak_that_cannot_run_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_session(*_arguments, **_options):
        raise RuntimeError("no QLinearConv kernel\nsecond line")

    monkeypatch.setattr("cifar_edge.runtime.session.create_session", no_session)
    measured = machine.measure_one(1, int8=True)
    assert measured["gflops"] is None and measured["reason"] == "QLinearConv did not run: no QLinearConv kernel"


def test_the_peak_line_names_shape_threads_and_both_precisions() -> None:
    machine_peak = {
        "threads": 1,
        "shape": machine.SHAPE,
        "fp32": {"op": "Conv", "gflops": 12.345},
        "int8": {"op": "QLinearConv", "gflops": None, "reason": "QLinearConv did not run: x"},
    }
    line = peak_line(machine_peak)
    assert "256->256 ch 3x3 on 32x32, batch 4, 1 thread)" in line
    assert "fp32 12.3 GFLOP/s (Conv)" in line and "int8 QLinearConv did not run: x" in line


def test_bench_json_efficiency_fields(benched_run: Benched) -> None:
    report = benched_run.report
    machine_peak = report["machine_peak"]
    assert machine_peak["threads"] == report["settings"]["threads"]
    assert machine_peak["shape"]["channels"] == machine.SHAPE["channels"]
    assert machine_peak["flop_per_call"] == machine.conv_flops()
    for name in ("fp32", "int8"):
        assert machine_peak[name]["gflops"] > 0 and machine_peak[name]["seconds"] > 0, machine_peak
    rows = {(row["variant"], row["provider"]): row for row in report["rows"]}
    for (variant, provider), row in rows.items():
        assert all(name in row for name in EFFICIENCY)
        assert row["mflop_per_image"] == rows[("onnx-fp32", "cpu")]["mflop_per_image"] > 0  # one network
        if provider != "cpu":
            assert row["percent_of_peak"] is None and row["peak_gflops"] is None
            continue
        expected_peak = machine_peak["int8" if variant == "onnx-int8" else "fp32"]["gflops"]
        assert row["peak_gflops"] == expected_peak
        assert row["gflops"] == pytest.approx(row["mflop_per_image"] * row["throughput_ips"] / 1000, rel=1e-3)
        assert row["percent_of_peak"] == pytest.approx(row["gflops"] / expected_peak * 100, rel=1e-3)
    assert report["flops"]["pytorch"]["file"] == str(benched_run.run_dir / "model.onnx")
    assert report["flops"]["onnx-int8"]["by_op_type"]["Conv"] > 0  # QDQ: its float Conv nodes count
    markdown = (benched_run.run_dir / "bench.md").read_text()
    assert "| MFLOP/img | GFLOP/s b256 | % peak |" in markdown and "machine peak (onnxruntime" in markdown
