"""``cifar-bench RUN_A RUN_B ...``: a menu of two real tiny runs (``--quick``), its three files and their schema, and a
broken run folder that fails only its own row."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from export_helpers import TINY_CLASSES, copy_run
from typer.testing import CliRunner

from cifar_edge.export.benchmark.cli import app
from cifar_edge.export.benchmark.menu import MenuRow, field_docs
from cifar_edge.runtime.classifier import Classifier
from cifar_edge.runtime.common.names import MENU_JSON, MENU_MD, MENU_ONE_PASS_DIR, MENU_PNG

pytestmark = pytest.mark.usefixtures("single_torch_thread")
runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPORT_KEYS = {"schema_version", "kind", "created_at", "machine", "settings", "fields", "runs", "files"}
MEASURED = (
    "mflop_per_image",
    "accuracy_1pass",
    "accuracy_flip",
    "accuracy_flip_shift",
    "int8_accuracy_1pass",
    "fp32_images_per_second",
    "fp32_latency_ms",
    "int8_images_per_second",
    "int8_latency_ms",
)


@dataclass(frozen=True)
class Menu:
    runs: tuple[Path, Path]
    output_dir: Path
    exit_code: int
    stdout: str
    stderr: str
    report: dict


def _small_tta_run(destination: Path, data_dir: Path) -> Path:
    """A second, smaller real run (AirNet 4/8/8, random weights) whose record bakes in flip_shift TTA."""
    import torch

    from cifar_edge.runtime.contract import Contract
    from cifar_edge.train.models import build_model
    from cifar_edge.train.run_folder import save_model_files

    torch.manual_seed(1)
    kwargs = {"num_classes": len(TINY_CLASSES), "widths": [4, 8, 8]}
    model = build_model("airnet", **kwargs)
    model.init_whitening(torch.randn(16, 3, 32, 32))
    record = {
        "architecture": {"name": "airnet", "kwargs": kwargs, "tta": "flip_shift"},
        "contract": Contract(class_names=TINY_CLASSES).to_dict(),
        "metrics": {},
        "data": {"spec": {"data": str(data_dir), "val_fraction": 0.1, "seed": 0}},
    }
    save_model_files(destination, model, record)
    return destination


@pytest.fixture(scope="module")
def menu(trained_run_dir: Path, labelled_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Menu:
    root = tmp_path_factory.mktemp("menu")
    runs = (copy_run(trained_run_dir, root / "trained"), _small_tta_run(root / "small", labelled_data_dir))
    output_dir = root / "out"
    result = runner.invoke(app, [*map(str, runs), "--quick", "--threads", "1", "-o", str(output_dir)])
    report = json.loads((output_dir / MENU_JSON).read_text()) if (output_dir / MENU_JSON).is_file() else {}
    return Menu(runs, output_dir, result.exit_code, result.stdout, result.stderr, report)


def test_a_menu_of_two_runs_writes_its_three_files(menu: Menu) -> None:
    assert menu.exit_code == 0, menu.stderr
    assert (menu.output_dir / MENU_PNG).read_bytes().startswith(PNG_SIGNATURE)
    assert menu.report["files"]["menu_png"] == str(menu.output_dir / MENU_PNG)
    assert [row["run_dir"] for row in menu.report["runs"]] == [str(run) for run in menu.runs]
    markdown = (menu.output_dir / MENU_MD).read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| run | model | params | MFLOP/img 1 pass |")
    assert "fp32 img/s b256 1 pass" in table[0] and "int8 ms b1 1 pass" in table[0]
    assert [line.split(" | ")[1] for line in table[1:]] == ["airnet 8/16/16", "airnet 4/8/8"]
    assert "speed: one pass per image (no TTA)" in markdown
    assert f"wrote {menu.output_dir / MENU_MD}, {menu.output_dir / MENU_JSON}, " in menu.stdout


def test_menu_json_describes_itself(menu: Menu) -> None:
    report = menu.report
    assert set(report) == REPORT_KEYS and report["kind"] == "cifar-edge benchmark menu"
    assert report["machine"]["cpu"] and report["machine"]["threads"] == 1 and report["machine"]["versions"]
    settings = report["settings"]
    assert settings["batch_size"] == 256 and settings["quick"] is True and settings["passes_per_image"] == 1
    assert settings["tta_passes"] == {"none": 1, "flip": 2, "flip_shift": 6}
    assert report["fields"] == field_docs() and set(report["fields"]) == set(MenuRow.__dataclass_fields__)
    for row in report["runs"]:
        assert set(row) == set(report["fields"])
        assert row["status"] == "ok" and row["reason"] is None and row["passes_per_image"] == 1, row
        assert row["architecture"] == "airnet" and row["parameters"] > 0 and row["images"] > 0
        assert all(isinstance(row[name], float) and row[name] >= 0 for name in MEASURED), row
        assert row["mflop_per_image"] > 0 and row["fp32_images_per_second"] > 0 and row["int8_latency_ms"] > 0
        for precision in ("fp32", "int8"):
            with Classifier(row["files"][precision], "cpu", intra_op_threads=1) as classifier:
                assert classifier.provenance["tta"] == "none"  # the speed columns time one pass
    trained, small = report["runs"]
    assert (trained["widths"], trained["run_tta"], small["widths"], small["run_tta"]) == (
        [8, 16, 16],
        "none",
        [4, 8, 8],
        "flip_shift",
    )
    assert trained["parameters"] > small["parameters"] and trained["mflop_per_image"] > small["mflop_per_image"]


def test_the_one_pass_accuracy_is_the_run_model_s(menu: Menu) -> None:
    import torch

    from cifar_edge.export.benchmark.artifacts import BenchConfig
    from cifar_edge.export.benchmark.measure import load_bench_data
    from cifar_edge.runtime.preprocess import normalize_batch
    from cifar_edge.train.run_folder import load_run

    for run_dir, row in zip(menu.runs, menu.report["runs"], strict=True):
        run = load_run(run_dir)
        data = load_bench_data(BenchConfig(quick=True), run)
        with torch.no_grad():
            top1 = run.model.eval()(torch.from_numpy(normalize_batch(data.images, run.contract))).argmax(1).numpy()
        assert row["images"] == len(data)
        assert row["accuracy_1pass"] == pytest.approx(100.0 * float(np.mean(top1 == data.labels)), abs=1e-3)


def test_a_run_with_tta_gets_its_one_pass_files_beside_its_own(menu: Menu) -> None:
    trained, small = menu.runs
    assert Path(menu.report["runs"][0]["files"]["fp32"]) == trained / "model.onnx"
    assert {Path(path) for path in menu.report["runs"][1]["files"].values()} == {
        small / MENU_ONE_PASS_DIR / "model.onnx",
        small / MENU_ONE_PASS_DIR / "model.int8.onnx",
    }
    assert not (small / "model.onnx").exists()  # its own (flip_shift) model.onnx is not the menu's to write


def test_a_broken_run_folder_fails_only_its_row(menu: Menu, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    monkeypatch.chdir(tmp_path)  # no --output-dir: the menu goes into the current folder
    result = runner.invoke(app, [str(menu.runs[0]), str(broken), "--quick", "--threads", "1", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert json.loads((tmp_path / MENU_JSON).read_text())["runs"] == report["runs"]
    assert (tmp_path / MENU_MD).is_file() and (tmp_path / MENU_PNG).is_file()
    good, bad = report["runs"]
    assert good["status"] == "ok" and good["notes"] == []  # its files from the first menu are reused
    assert bad["status"] == "failed" and "run.json" in bad["reason"] and "\n" not in bad["reason"]
    assert all(bad[name] is None for name in MEASURED)
    assert result.stderr.splitlines() == [f"cifar-bench: {broken} failed: {bad['reason']}"]


def test_help_loads_no_torch() -> None:
    done = run_cli("cifar-bench", "--help", block=("torch",), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "[RUN_DIR]..." in done.stdout and "menu" in done.stdout
