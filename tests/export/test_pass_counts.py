"""Forward passes per image, as ``cifar-infer --doctor``, ``cifar-eval`` and ``cifar-bench`` report them, for a real
one-pass export and a real ``--tta flip_shift`` export of the tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evalbench_fixtures import eval_images_fixture, eval_run_fixture  # noqa: F401  (session fixtures)
from export_helpers import copy_run
from typer.testing import CliRunner

from cifar_edge.export.benchmark.cli import app as bench_app
from cifar_edge.export.evaluate.cli import app as eval_app
from cifar_edge.runtime.infer.cli import app as infer_app

pytestmark = pytest.mark.usefixtures("single_torch_thread")
runner = CliRunner()
DESCRIBED = {1: "1 pass (no TTA)", 6: "6 passes (flip_shift TTA)"}


@pytest.fixture(scope="module")
def tta_run(tiny_run_dir: Path, eval_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny run with model.onnx exported ``--tta flip_shift`` (parity gate on)."""
    from cifar_edge.export import ExportConfig, export_run

    run_dir = copy_run(tiny_run_dir, tmp_path_factory.mktemp("tta_run"))
    config = ExportConfig(formats=("onnx",), tta="flip_shift", data=eval_images, verify_images=18)
    assert export_run(run_dir, config).exit_code == 0
    return run_dir


@pytest.fixture(params=[1, 6], ids=["one-pass", "flip_shift"])
def exported(request: pytest.FixtureRequest, eval_run: Path) -> tuple[Path, int]:
    """(run folder holding model.onnx, the passes per image it runs)."""
    passes = request.param
    return (request.getfixturevalue("tta_run") if passes == 6 else eval_run), passes


def test_doctor(exported: tuple[Path, int]) -> None:
    run_dir, passes = exported
    model = str(run_dir / "model.onnx")
    result = runner.invoke(infer_app, ["--doctor", "--model", model])
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("passes per image")]
    assert line.split(maxsplit=3)[3] == DESCRIBED[passes]
    report = json.loads(runner.invoke(infer_app, ["--doctor", "--json", "--model", model]).stdout)
    assert report["model"]["passes_per_image"] == passes


def test_eval(exported: tuple[Path, int], eval_images: Path, tmp_path: Path) -> None:
    run_dir, passes = exported
    arguments = [str(run_dir / "model.onnx"), "--data", str(eval_images), "--no-plots", "-o", str(tmp_path)]
    result = runner.invoke(eval_app, arguments)
    assert result.exit_code == 0, result.output
    assert f"forward passes per image: {DESCRIBED[passes]}" in result.stdout.splitlines()
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["model"]["passes_per_image"] == passes
    assert json.loads(runner.invoke(eval_app, [*arguments, "--json"]).stdout)["model"]["passes_per_image"] == passes


def test_eval_of_a_run_folder_counts_the_tta_its_record_names(
    eval_run: Path, eval_images: Path, tmp_path: Path
) -> None:
    result = runner.invoke(eval_app, [str(eval_run), "--data", str(eval_images), "--no-plots", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "eval.json").read_text())["model"]["passes_per_image"] == 1


def test_bench(exported: tuple[Path, int], eval_images: Path, tmp_path: Path) -> None:
    run_dir, passes = exported
    arguments = [str(run_dir), "--data", str(eval_images), "--quick", "--formats", "onnx-fp32", "--providers", "cpu"]
    result = runner.invoke(bench_app, [*arguments, "--no-cold-start", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert row["variant"] == "onnx-fp32" and row["passes_per_image"] == passes
    header = next(line for line in result.stdout.splitlines() if line.startswith("format"))
    (cells,) = [line.split("│") for line in result.stdout.splitlines() if line.startswith("ONNX ")]
    assert int(cells[[name.strip() for name in header.split("┃")].index("passes")]) == passes
