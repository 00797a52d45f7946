"""Real file-system faults for the write-failure tests: a tiny tmpfs (full disk), a read-only remount, chattr +i.

Root ignores file modes, so chmod cannot make a folder read-only here; a mount or an immutable flag can. Each helper
skips the test with the reason when this machine does not allow it (a container without CAP_SYS_ADMIN, no chattr).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """``folder`` as a fresh tmpfs of ``size`` (e.g. "64k") for the body; skips the test where mounts are refused."""
    if not sys.platform.startswith("linux") or shutil.which("mount") is None:
        pytest.skip("tmpfs mounts need Linux and mount(8)")
    folder.mkdir(parents=True, exist_ok=True)
    done = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield folder
    finally:
        _run("umount", "-l", str(folder))


def remount_read_only(folder: Path) -> None:
    done = _run("mount", "-o", "remount,ro", str(folder))
    if done.returncode != 0:
        pytest.skip(f"cannot remount {folder} read-only: {done.stderr.strip()}")


def fill(folder: Path) -> None:
    """Fill the file system of ``folder`` to the last byte."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        with contextlib.suppress(OSError):  # the last partial block
            while True:
                os.write(fd, b"\0")
    finally:
        os.close(fd)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """``chattr +i path`` for the body (even root cannot replace or remove it); skips where chattr is refused."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    done = _run("chattr", "+i", str(path))
    if done.returncode != 0:
        pytest.skip(f"chattr +i refused here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        _run("chattr", "-i", str(path))
