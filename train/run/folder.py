"""Choosing run folders: ``runs/<timestamp>`` by default, a ``runs/latest`` pointer, and resolving --resume."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from cifar_edge.runtime.common.atomic_io import atomic_write_text, write_error
from cifar_edge.runtime.common.names import CHECKPOINT_FILE, LATEST_LINK
from cifar_edge.runtime.model_file import latest_run_dir


def new_run_dir(runs_root: str | Path, now: datetime | None = None) -> Path:
    """Create and return ``runs_root/<YYYY-mm-dd_HH-MM-SS>`` (with a -2, -3... suffix if that name is taken)."""
    runs_root = Path(runs_root)
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(runs_root, error) from None
    stamp = (now or datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    for attempt in range(1, 1000):
        candidate = runs_root / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as error:
            raise write_error(candidate, error) from None
        return candidate
    raise ValueError(f"{runs_root}: cannot find a free run folder name for {stamp}")


def point_latest(runs_root: str | Path, run_dir: Path) -> Path:
    """Make ``runs_root/latest`` a relative symlink to ``run_dir``; where symlinks fail, a text file naming it."""
    runs_root = Path(runs_root)
    pointer = runs_root / LATEST_LINK
    temp_link = runs_root / f".{LATEST_LINK}.{os.getpid()}.tmp"
    try:
        temp_link.unlink(missing_ok=True)
        os.symlink(run_dir.name, temp_link, target_is_directory=True)
        if pointer.is_dir() and not pointer.is_symlink():
            raise OSError(f"{pointer} is a real folder")
        os.replace(temp_link, pointer)  # atomic: readers never see a missing pointer
    except OSError:
        temp_link.unlink(missing_ok=True)
        if pointer.is_symlink():
            pointer.unlink()
        if pointer.is_dir():
            return pointer  # someone's real folder named "latest": leave it alone
        atomic_write_text(pointer, run_dir.name + "\n")
    return pointer


def resolve_resume_dir(path: str | Path) -> Path:
    """The run folder ``path`` names: a run folder, a ``latest`` symlink, or a ``latest`` pointer file."""
    path = Path(path)
    if path.name == LATEST_LINK and path.is_file():  # the text pointer left where symlinks fail (the runtime's reader)
        path = latest_run_dir(path.parent) or path
    if not (path / CHECKPOINT_FILE).is_file():
        raise ValueError(f"--resume {path}: no {CHECKPOINT_FILE} there (is it a cifar-train run folder?)")
    return path
