"""cifar-bench into a read-only output folder: exit 5 with one line, before anything is measured."""

from __future__ import annotations

from pathlib import Path

import pytest
from fs_faults import remount_read_only, tmpfs
from typer.testing import CliRunner

from cifar_edge.export.benchmark.cli import app
from cifar_edge.runtime.common.command import ExitCode

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_bench_into_a_read_only_folder(tiny_run_dir: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "out", "1m") as folder:
        remount_read_only(folder)
        result = CliRunner().invoke(app, [str(tiny_run_dir), "--output-dir", str(folder), "--quick"])
        assert result.exit_code == ExitCode.WRITE_FAILED, result.output
        assert result.stderr.splitlines() == [f"cifar-bench: error: cannot write {folder}: read-only file system"]
