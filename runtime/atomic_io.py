"""Crash-safe file writes: a reader sees the old file or the complete new one, never a truncated one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _default_file_mode() -> int:
    # Read once at import: os.umask can only be read by setting it, which is racy once threads run.
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


# mkstemp creates 0600 files; the final file gets the mode a plain open() would give it (0666 minus the umask).
_FILE_MODE = _default_file_mode()


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``final_path``; on success fsync it and rename it over ``final_path``.

    Whatever the body writes to the temporary path only replaces ``final_path`` when the body returns normally.
    On any exception the temporary file is removed and ``final_path`` is left untouched.
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{final_path.name}.", suffix=".tmp", dir=final_path.parent)
    os.close(handle)
    temp_path = Path(temp_name)
    try:
        yield temp_path
        os.chmod(temp_path, _FILE_MODE)
        with open(temp_path, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temp_path, final_path)
        _fsync_directory(final_path.parent)
    finally:
        temp_path.unlink(missing_ok=True)


def atomic_write_bytes(final_path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(final_path) as temp_path:
        temp_path.write_bytes(data)


def atomic_write_text(final_path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(final_path, text.encode("utf-8"))


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened for this.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
