"""``cifar-bench --quick`` on the tiny run: every row type, skipped CUDA rows that say why, reuse and export of
artifacts, bench.json / bench.md, and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from evalbench_fixtures import (  # noqa: F401  (session fixtures)
    Benched,
    benched_run_fixture,
    eval_images_fixture,
    eval_run_fixture,
)
from typer.testing import CliRunner

from cifar_edge.export.benchmark.cli import app
from cifar_edge.runtime.classifier import Classifier

runner = CliRunner()
VARIANTS = ("pytorch", "torchscript", "exportedprogram", "onnx-fp32", "onnx-fp16", "onnx-int8")
TORCH_VARIANTS = ("pytorch", "torchscript", "exportedprogram")
REPORT_KEYS = {"schema_version", "kind", "created_at", "run_dir", "run_name", "machine", "data", "settings", "rows"}
REPORT_KEYS |= {"machine_peak", "flops"}
ROW_KEYS = {
    "variant",
    "format",
    "precision",
    "provider",
    "status",
    "passes_per_image",
    "reason",
    "file",
    "size_mb",
    "accuracy",
    "agreement",
    "latency_p50_ms",
    "latency_p95_ms",
    "throughput_ips",
    "cold_start_s",
    "cold_start",
    "mflop_per_image",
    "gflops",
    "peak_gflops",
    "percent_of_peak",
    "notes",
}
MEASURED = ("size_mb", "accuracy", "agreement", "latency_p50_ms", "latency_p95_ms", "throughput_ips", "cold_start_s")


def rows_by_key(report: dict) -> dict[tuple[str, str], dict]:
    return {(row["variant"], row["provider"]): row for row in report["rows"]}


def test_every_row_type_is_measured_on_cpu(benched_run: Benched, eval_images: Path) -> None:
    assert benched_run.exit_code == 0, benched_run.stderr
    report = benched_run.report
    assert REPORT_KEYS | {"targets", "files"} == set(report) and report["schema_version"] == 3
    rows = rows_by_key(report)
    assert set(rows) == {(variant, provider) for variant in VARIANTS for provider in ("cpu", "cuda")}
    for variant in VARIANTS:
        row = rows[(variant, "cpu")]
        assert set(row) == ROW_KEYS
        assert row["status"] == "ok", row
        assert row["passes_per_image"] == 1  # the tiny run's record names no TTA, and its exports have none
        assert all(isinstance(row[name], float) and row[name] > 0 for name in MEASURED), row
        assert row["latency_p95_ms"] >= row["latency_p50_ms"]
        assert row["cold_start"]["torch_loaded"] is (variant in TORCH_VARIANTS)
        assert Path(row["file"]).is_file()
    for variant in (*TORCH_VARIANTS, "onnx-fp32"):
        assert rows[(variant, "cpu")]["agreement"] == 100.0  # fp32 through the parity gate: identical top-1
    # The accuracy column, counted independently with the runtime's Classifier on the same images.
    with Classifier(benched_run.run_dir / "model.onnx", "cpu") as classifier:
        hits = [
            prediction.label == name
            for name in classifier.contract.class_names
            for prediction in classifier.predict(sorted((eval_images / "test" / name).glob("*.png")))
        ]
    assert rows[("onnx-fp32", "cpu")]["accuracy"] == pytest.approx(100.0 * sum(hits) / len(hits), abs=1e-3)
    assert report["data"]["images"] == len(hits) == 18


def test_cuda_rows_are_skipped_with_the_reason(benched_run: Benched) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the CUDA rows run here")
    rows = rows_by_key(benched_run.report)
    for variant in VARIANTS:
        row = rows[(variant, "cuda")]
        assert row["status"] == "skipped" and row["throughput_ips"] is None
        expected = "CPU-only" if variant.startswith("onnx") else "CUDA"
        assert expected in row["reason"], row["reason"]
    assert "skipped: ONNX fp32 cuda, ONNX fp16 cuda, ONNX int8 cuda: " in benched_run.stdout


def test_existing_artifacts_are_reused_and_missing_ones_exported(benched_run: Benched) -> None:
    run_dir = benched_run.run_dir
    for name, mtime in benched_run.fp32_mtimes.items():
        assert (run_dir / name).stat().st_mtime_ns == mtime, f"{name} was re-exported"
    rows = rows_by_key(benched_run.report)
    assert not any("export" in note for note in rows[("onnx-fp32", "cpu")]["notes"])
    for variant, name in (
        ("exportedprogram", "model.pt2"),
        ("onnx-fp16", "model.fp16.onnx"),
        ("onnx-int8", "model.int8.onnx"),
    ):
        assert "exported now (was missing)" in rows[(variant, "cpu")]["notes"]
        assert json.loads((run_dir / f"{name}.parity.json").read_text())["passed"] is True


def test_machine_table_markdown_and_targets(benched_run: Benched) -> None:
    report, run_dir = benched_run.report, benched_run.run_dir
    machine = report["machine"]
    assert machine["cpu"] and machine["threads"] >= 1 and machine["versions"]["onnxruntime"]
    assert report["settings"]["quick"] is True and report["settings"]["batch_size"] == 256
    assert report["files"] == {"bench_md": str(run_dir / "bench.md"), "bench_json": str(run_dir / "bench.json")}
    markdown = (run_dir / "bench.md").read_text()
    assert "| format | precision | provider | passes | size MB |" in markdown and "threads per engine" in markdown
    assert markdown.count("| ONNX | int8 |") == 2
    lines = benched_run.stdout.splitlines()
    assert lines[0].startswith("CPU: ") and lines[1].startswith("GPU: ")
    table_rows = [
        line.split() for line in lines if line.startswith(("PyTorch ", "TorchScript ", "torch.export ", "ONNX "))
    ]
    assert [cells[:3] for cells in table_rows[:3]] == [["PyTorch", "│", "fp32"]] * 2 + [["TorchScript", "│", "fp32"]]
    assert len(table_rows) == 2 * len(VARIANTS)
    targets = {target["name"]: target for target in report["targets"]}
    assert len(targets) == 5
    assert all(target["measured"] is not None and target["met"] in (True, False) for target in targets.values())
    speedup = targets["int8 ONNX throughput vs fp32 ONNX (CPU, batch 256)"]["measured"]
    rows = rows_by_key(report)
    expected = rows[("onnx-int8", "cpu")]["throughput_ips"] / rows[("onnx-fp32", "cpu")]["throughput_ips"]
    assert speedup == pytest.approx(expected, rel=1e-3)


def test_a_subset_reuses_artifacts_and_prints_json(benched_run: Benched, eval_images: Path, tmp_path: Path) -> None:
    arguments = [str(benched_run.run_dir), "--data", str(eval_images), "--quick", "--formats", "onnx-int8"]
    arguments += ["--providers", "cpu", "--no-cold-start", "--json", "-o", str(tmp_path)]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    (row,) = report["rows"]
    assert (row["variant"], row["provider"], row["status"], row["notes"]) == ("onnx-int8", "cpu", "ok", [])
    assert row["cold_start_s"] is None and (tmp_path / "bench.json").is_file() and (tmp_path / "bench.md").is_file()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{run}", "--quick"], "no data record"),
        (["{run}", "--formats", "onnx-int4"], "--formats takes"),
        (["{run}", "--providers", "tpu"], "--providers takes"),
        (["{missing}"], "run folder not found"),
        (["{run}", "--data", "{missing}"], "no such folder"),
    ],
)
def test_usage_errors_are_exit_2(tiny_run_dir: Path, tmp_path: Path, arguments: list[str], message: str) -> None:
    names = {"run": tiny_run_dir, "missing": tmp_path / "missing"}
    result = runner.invoke(app, [argument.format(**names) for argument in arguments])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
