"""cifar-train run folders that cannot be written: exit 5 with one line, before the data is even decoded (read-only)
or at the first save (disk full), never a traceback."""

from __future__ import annotations

from pathlib import Path

from fs_faults import remount_read_only, tmpfs
from typer.testing import CliRunner

from cifar_edge.runtime.common.command import ExitCode
from cifar_edge.train.cli import app

FAST = ["--recipe", "seed", "--batch-size", "16", "--threads", "1", "--epochs", "1"]


def _train(*args: str):
    return CliRunner().invoke(app, [*FAST, *args])


def test_read_only_run_folder_fails_before_training(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m") as folder:
        remount_read_only(folder)
        # --data points nowhere: had training started, that usage error (exit 2) would be the answer.
        result = _train("--data", str(tmp_path / "no_such_data"), "--run-dir", str(folder / "run"))
        assert result.exit_code == ExitCode.WRITE_FAILED, result.output
        assert result.stderr.splitlines() == [f"cifar-train: error: cannot write {folder}: read-only file system"]


def test_full_disk_at_the_first_save_is_one_line(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "64k") as folder:
        cache = ["--cache-dir", str(tmp_path / "cache")]
        result = _train("--data", str(tiny_dataset_dir), *cache, "--run-dir", str(folder / "run"), "--quiet")
        assert result.exit_code == ExitCode.WRITE_FAILED, result.output
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"cifar-train: error: cannot write {folder / 'run'}/") and line.endswith(
            ": no space left on device"
        ), line
        leftovers = [path.name for path in (folder / "run").iterdir() if path.name.endswith(".tmp")]
        assert leftovers == []
