"""Run folder names and the runs/latest pointer (symlink, or a text file where symlinks fail)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from cifar_edge.train.run_folder import new_run_dir, point_latest, resolve_resume_dir


def test_timestamped_folders_never_collide(tmp_path: Path) -> None:
    moment = datetime(2025, 1, 2, 3, 4, 5)
    first, second = new_run_dir(tmp_path, moment), new_run_dir(tmp_path, moment)
    assert (first.name, second.name) == ("2025-01-02_03-04-05", "2025-01-02_03-04-05-2")
    assert first.is_dir() and second.is_dir()


def test_latest_is_a_relative_symlink_that_moves(tmp_path: Path) -> None:
    first, second = new_run_dir(tmp_path), new_run_dir(tmp_path)
    point_latest(tmp_path, first)
    point_latest(tmp_path, second)
    latest = tmp_path / "latest"
    assert latest.is_symlink() and os.readlink(latest) == second.name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name, "latest"])


def test_latest_falls_back_to_a_text_file_where_symlinks_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_symlinks(*args: object, **kwargs: object) -> None:
        raise OSError("symbolic links are not supported here")

    run_dir = new_run_dir(tmp_path)
    (run_dir / "checkpoint.pt").write_bytes(b"x")
    monkeypatch.setattr(os, "symlink", no_symlinks)
    pointer = point_latest(tmp_path, run_dir)
    assert not pointer.is_symlink() and pointer.read_text().strip() == run_dir.name
    assert resolve_resume_dir(pointer) == run_dir  # --resume runs/latest works with the text pointer too
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([run_dir.name, "latest"])
