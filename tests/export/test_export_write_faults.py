"""cifar-export into a read-only folder, onto an immutable file, onto a full disk: exit 5 at once, old artifact kept.

Each case passes ``--data`` pointing at a folder that does not exist: had the export started its work, it would end
in that usage error (exit 2) instead, so exit 5 proves the destination was checked first.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import error_lines, run_cli
from export_helpers import copy_run
from fs_faults import fill, immutable, remount_read_only, tmpfs

from cifar_edge.runtime.common.command import ExitCode

PREVIOUS = b"the previous artifact"


def _export(*args: object):
    return run_cli("cifar-export", *args, "--quiet", "--data", "/nonexistent/images")


def _assert_one_line(done, expected: str) -> None:
    assert done.returncode == ExitCode.WRITE_FAILED == 5, done.stderr
    assert error_lines(done.stderr, "cifar-export") == [f"cifar-export: error: {expected}"], done.stderr
    assert "Traceback" not in done.stderr


def test_read_only_destination(tiny_run_dir: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m") as folder:
        (folder / "model.onnx").write_bytes(PREVIOUS)
        remount_read_only(folder)
        done = _export(tiny_run_dir, "--output", folder / "model.onnx")
        _assert_one_line(done, f"cannot write {folder}: read-only file system")
        assert (folder / "model.onnx").read_bytes() == PREVIOUS


def test_full_disk(tiny_run_dir: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "64k") as folder:
        (folder / "model.onnx").write_bytes(PREVIOUS)
        fill(folder)
        done = _export(tiny_run_dir, "--output", folder / "model.onnx")
        _assert_one_line(done, f"cannot write {folder}: no space left on device")
        assert (folder / "model.onnx").read_bytes() == PREVIOUS


@pytest.mark.parametrize("name", ["model.onnx", "model.onnx.parity.json"])
def test_immutable_artifact_or_report(tiny_run_dir: Path, tmp_path: Path, name: str) -> None:
    run_dir = copy_run(tiny_run_dir, tmp_path / "run")
    (run_dir / name).write_bytes(PREVIOUS)
    with immutable(run_dir / name):
        done = _export(run_dir)
        _assert_one_line(
            done, f"cannot write {run_dir / name}: the file is immutable or append-only (chattr -i / -a to allow it)"
        )
        assert (run_dir / name).read_bytes() == PREVIOUS
    assert sorted(path.name for path in run_dir.iterdir()) == sorted(["model.safetensors", "run.json", name])
