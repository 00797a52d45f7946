"""Session fixtures shared by the cifar-eval and cifar-bench tests (test modules import the ``*_fixture`` functions;
pytest finds them by their ``name``).

``eval_run`` is a copy of the tiny run with its fp32 ONNX and TorchScript exported through ``export_run`` (parity
gate on); ``benched_run`` copies that folder and runs ``cifar-bench --quick`` on it, so the benchmark reuses the two
fp32 artifacts and exports the fp16 and int8 ones itself.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from export_helpers import copy_run, write_image_folder
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture(scope="session", name="eval_images")
def eval_images_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``DIR/train/<class>/*.png`` (3 x 10, calibration) and ``DIR/test/<class>/*.png`` (3 x 6, evaluation)."""
    root = tmp_path_factory.mktemp("eval_images")
    write_image_folder(root / "train", per_class=10, seed=11)
    write_image_folder(root / "test", per_class=6, seed=12)
    return root


@pytest.fixture(scope="session", name="eval_run")
def eval_run_fixture(tiny_run_dir: Path, eval_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cifar_edge.export import ExportConfig, export_run

    run_dir = copy_run(tiny_run_dir, tmp_path_factory.mktemp("eval_run"))
    result = export_run(run_dir, ExportConfig(formats=("onnx", "torchscript"), data=eval_images))
    assert result.exit_code == 0, result.to_dict()
    return run_dir


@dataclass(frozen=True)
class Benched:
    run_dir: Path
    exit_code: int
    stdout: str
    stderr: str
    report: dict
    fp32_mtimes: dict[str, int]  # of the artifacts that existed before the benchmark


@pytest.fixture(scope="session", name="benched_run")
def benched_run_fixture(eval_run: Path, eval_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Benched:
    from cifar_edge.export.benchmark.cli import app

    run_dir = tmp_path_factory.mktemp("benched") / "run"
    shutil.copytree(eval_run, run_dir, ignore=shutil.ignore_patterns("*.eval"))
    mtimes = {name: (run_dir / name).stat().st_mtime_ns for name in ("model.onnx", "model.torchscript.pt")}
    result = runner.invoke(app, [str(run_dir), "--data", str(eval_images), "--quick"])
    report = json.loads((run_dir / "bench.json").read_text()) if (run_dir / "bench.json").is_file() else {}
    return Benched(run_dir, result.exit_code, result.stdout, result.stderr, report, mtimes)
