"""The format table walked row by row: every format x precision is exported, opened with its row's opener, run,
evaluated (cifar-eval's library function) and benchmarked (cifar-bench's), so no format can miss a command."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from evalbench_fixtures import eval_images_fixture  # noqa: F401  (session fixture)
from export_helpers import copy_run, quick_bench_config

from cifar_edge.export import ExportConfig, export_run
from cifar_edge.export.benchmark.artifacts import VARIANTS
from cifar_edge.export.benchmark.measure import run_benchmark
from cifar_edge.export.engines import OpenOptions
from cifar_edge.export.evaluate.command import EvalOptions, run_eval
from cifar_edge.export.formats import DTYPES, FORMATS, FP32, QUANTIZATIONS, ROWS, ArtifactFormat, _resolve
from cifar_edge.export.formats.metadata import read_entries
from cifar_edge.export.models import detect_kind
from cifar_edge.runtime.common.names import MODEL_ONNX

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_the_table_is_consistent() -> None:
    keys = [(row.format, row.precision) for row in ROWS]
    assert len(set(keys)) == len(keys)
    assert len({row.file_name for row in ROWS}) == len(ROWS) and len({row.bench_key for row in ROWS}) == len(ROWS)
    assert all((name, FP32) in keys for name in FORMATS)  # every format has its default precision
    assert next(row for row in ROWS if row.format == FORMATS[0]).file_name == MODEL_ONNX  # cifar-infer's default
    assert DTYPES == ("fp32", "fp16") and QUANTIZATIONS == ("int8",)
    assert ExportConfig().formats == (ROWS[0].format,)  # cifar-export's default is the table's first row
    for row in ROWS:
        assert callable(_resolve(row.writer)) and callable(_resolve(row.opener)), row
        assert row.checker is None or callable(_resolve(row.checker)), row
        assert all(field in ExportConfig.__dataclass_fields__ for field, _ in row.selected_by)
        assert VARIANTS[row.bench_key].artifact is row  # cifar-bench has a row for every format x precision


@pytest.fixture(scope="module")
def exported(tiny_run_dir: Path, eval_images: Path, tmp_path_factory: pytest.TempPathFactory):
    """Export each row on its own copy of the tiny run (parity gate on): its run folder, by row."""

    def export(row: ArtifactFormat) -> Path:
        run_dir = copy_run(tiny_run_dir, tmp_path_factory.mktemp(row.bench_key))
        config = ExportConfig(
            formats=(row.format,), data=eval_images, verify_images=18, calibration_images=30, **dict(row.selected_by)
        )
        result = export_run(run_dir, config)
        assert result.exit_code == 0, result.to_dict()
        (artifact,) = result.artifacts
        assert (artifact.format, artifact.precision, artifact.path) == (
            row.format,
            row.precision,
            run_dir / row.file_name,
        )
        return run_dir

    return export


@pytest.mark.parametrize("row", ROWS, ids=[row.bench_key for row in ROWS])
def test_every_row_exports_opens_runs_evaluates_and_benchmarks(
    row: ArtifactFormat, exported, eval_images: Path, tmp_path: Path
) -> None:
    run_dir = exported(row)
    path = run_dir / row.file_name
    assert detect_kind(path) == row.format  # cifar-eval recognises the file as this format

    engine = row.open(path, OpenOptions(provider="cpu"))
    try:
        contract, provenance = read_entries({key: value for key, value in engine.metadata.items() if value})
        assert (provenance["format"], provenance["precision"]) == (row.format, row.precision)
        scores = engine.run(np.zeros((3, 3, *contract.image_size), dtype=np.float32))
        assert scores.shape == (3, contract.num_classes) and np.isfinite(scores).all()
    finally:
        engine.close()

    stdout = io.StringIO()
    options = EvalOptions(str(path), str(eval_images), provider="cpu", output_dir=str(tmp_path), plots=False)
    assert run_eval(options, stdout=stdout, stderr=io.StringIO()) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["model"]["format"] == row.label and report["model"]["precision"] == row.precision
    assert report["images"] == 18

    (bench_row,) = run_benchmark(quick_bench_config(run_dir, eval_images, row.bench_key)).rows
    assert (bench_row.variant, bench_row.format, bench_row.status) == (row.bench_key, row.label, "ok"), bench_row
    assert bench_row.notes == []  # the file just exported was reused, not exported again
    assert bench_row.accuracy == pytest.approx(100.0 * report["top1_accuracy"], abs=1e-3)
    assert bench_row.throughput_ips > 0 and bench_row.latency_p50_ms > 0
