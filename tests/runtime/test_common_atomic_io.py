"""Write failures on real file systems: one WriteError naming the path, the previous file intact; the lock."""

from __future__ import annotations

import errno
import multiprocessing
from pathlib import Path

import pytest
from fs_faults import fill, immutable, remount_read_only, tmpfs

from cifar_edge.runtime.common.atomic_io import (
    LockedError,
    WriteError,
    atomic_folder,
    atomic_write_bytes,
    check_writable,
    exclusive_lock,
)


def _leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_full_disk_mid_write_keeps_the_previous_file(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "64k") as folder:
        target = folder / "model.onnx"
        atomic_write_bytes(target, b"previous")
        with pytest.raises(WriteError) as failed:
            atomic_write_bytes(target, b"\1" * 200_000)  # more than the file system holds
        assert str(failed.value) == f"cannot write {target}: no space left on device"
        assert failed.value.errno == errno.ENOSPC and isinstance(failed.value, OSError)
        assert target.read_bytes() == b"previous" and _leftovers(folder) == []
        # Checked before any work: the probe write fails as the real one would.
        fill(folder)
        with pytest.raises(WriteError, match=f"cannot write {folder}: no space left on device"):
            check_writable(folder)
        (folder / "filler").unlink()
        with pytest.raises(WriteError, match=r"no space left on device \([0-9,]+ bytes free, about 1,000,000 needed\)"):
            check_writable(folder, needed_bytes=1_000_000)
        check_writable(folder, needed_bytes=1000)


def test_read_only_file_system(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m") as folder:
        target = folder / "eval.json"
        target.write_text("previous")
        remount_read_only(folder)
        with pytest.raises(WriteError, match=f"cannot write {folder}: read-only file system"):
            check_writable(folder, files=[target])
        with pytest.raises(WriteError, match=f"cannot write {target}: read-only file system"):
            atomic_write_bytes(target, b"new")
        assert target.read_text() == "previous"
        # create=False checks where a missing folder would be made, without making it.
        with pytest.raises(WriteError, match=f"cannot write {folder}: read-only file system"):
            check_writable(folder / "runs" / "new", create=False)


def test_immutable_file_is_found_before_the_work(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous")
    with immutable(target):
        with pytest.raises(WriteError, match="the file is immutable or append-only"):
            check_writable(tmp_path, files=[target])
        with pytest.raises(WriteError, match=f"cannot write {target}: operation not permitted"):
            atomic_write_bytes(target, b"new")
        assert target.read_bytes() == b"previous" and _leftovers(tmp_path) == []
    check_writable(tmp_path, files=[target, tmp_path / "absent.json"])


def _hold(lock: str, ready, release) -> None:
    with exclusive_lock(lock, "model.onnx"):
        ready.set()
        release.wait(30)


def test_exclusive_lock_refuses_a_second_holder_and_cleans_up(tmp_path: Path) -> None:
    lock = tmp_path / "model.onnx.lock"
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(lock), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(LockedError) as refused, exclusive_lock(lock, "model.onnx"):
            pass
        assert str(refused.value) == (
            f"cannot write model.onnx: another process is writing it (it holds {lock}); try again later"
        )
    finally:
        release.set()
        holder.join(30)
    with exclusive_lock(lock, "model.onnx"):  # free again once the holder is done
        assert lock.is_file()
    assert not lock.exists()


def test_atomic_folder_replaces_a_folder_whole_or_not_at_all(tmp_path: Path) -> None:
    final = tmp_path / "repo"
    with atomic_folder(final) as temp:
        (temp / "model").mkdir()
        (temp / "model" / "config.pbtxt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(final) as temp:
        (temp / "model").mkdir()
        (temp / "model" / "config.pbtxt").write_text("half")
        raise RuntimeError("the gate failed")
    assert (final / "model" / "config.pbtxt").read_text() == "old"
    with atomic_folder(final) as temp:
        (temp / "new").write_text("new")
    assert [path.name for path in final.iterdir()] == ["new"] and (final / "new").stat().st_mode & 0o777 != 0o600
    assert sorted(path.name for path in tmp_path.iterdir()) == ["repo"]  # no temporary or moved-aside folder left
