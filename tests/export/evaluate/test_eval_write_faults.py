"""cifar-eval into a full or read-only output folder: exit 5 with one line, before the model runs; eval.json kept."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import run_cli
from fs_faults import fill, remount_read_only, tmpfs
from runtime_helpers import build_colour_model, save_model, write_colour_folder

from cifar_edge.runtime.common.command import ExitCode
from cifar_edge.runtime.contract import unnormalized_contract


def test_eval_into_a_full_then_read_only_folder(tmp_path: Path) -> None:
    contract = unnormalized_contract(class_names=("red", "green", "blue"))
    model = save_model(build_colour_model(contract), tmp_path / "colour.onnx")
    images = write_colour_folder(tmp_path / "images", per_class=2)
    with tmpfs(tmp_path / "out", "64k") as folder:
        (folder / "eval.json").write_text("previous")
        fill(folder)
        done = run_cli("cifar-eval", model, "--data", images, "-o", folder, "-q", timeout=120)
        assert done.returncode == ExitCode.WRITE_FAILED, done.stderr
        assert done.stderr.splitlines() == [f"cifar-eval: error: cannot write {folder}: no space left on device"]
        (folder / "filler").unlink()
        remount_read_only(folder)
        done = run_cli("cifar-eval", model, "--data", images, "-o", folder, "-q", timeout=120)
        assert done.returncode == ExitCode.WRITE_FAILED, done.stderr
        assert done.stderr.splitlines() == [f"cifar-eval: error: cannot write {folder}: read-only file system"]
        assert (folder / "eval.json").read_text() == "previous"
    # The default folder (beside the model) gets a hint, as the user never named it.
    with tmpfs(tmp_path / "models", "1m") as folder:
        save_model(build_colour_model(contract), folder / "colour.onnx")
        remount_read_only(folder)
        done = run_cli("cifar-eval", folder / "colour.onnx", "--data", images, "-q", timeout=120)
        assert done.returncode == ExitCode.WRITE_FAILED, done.stderr
        assert done.stderr.splitlines() == [
            f"cifar-eval: error: cannot write {folder}: read-only file system; choose another folder with --output-dir"
        ]
