"""Crash-safe file writes: a reader sees the old file or the complete new one, never a truncated one.

Every failure to write (no space, read-only or immutable destination, no permission) is a :class:`WriteError`:
one line naming the path, exit code ``ExitCode.WRITE_FAILED`` in every command. ``check_writable`` finds the
common ones before any work is done, and ``exclusive_lock`` keeps two processes from writing one artifact at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

# The errors that mean "this destination cannot take the write" (as opposed to a bug in what is written).
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EEXIST, errno.ENOTDIR}
)
_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted (an immutable or append-only file or folder?)",
    errno.EFBIG: "file too large for this file system",
    errno.ENOTDIR: "a path component is not a folder",
    errno.EEXIST: "a file is in the way of a folder of that name",
}
# Linux ioctl reading a file's attribute flags (chattr): immutable and append-only files cannot be replaced.
_FS_IOC_GETFLAGS = 0x80086601
_FS_IMMUTABLE_FL = 0x10
_FS_APPEND_FL = 0x20
_PROBE_BYTES = 4096


class WriteError(OSError):
    """``path`` cannot be written; ``str()`` is one line: ``cannot write <path>: <reason>``."""

    def __init__(self, path: str | os.PathLike[str], code: int | None, reason: str) -> None:
        super().__init__(code or 0, reason, os.fspath(path))
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"


class LockedError(WriteError):
    """Another process holds the lock of the file this one wants to write."""


def write_error(path: str | os.PathLike[str], error: OSError) -> WriteError:
    """``error`` (raised while writing ``path``) as a WriteError with a plain-words reason."""
    if isinstance(error, WriteError):
        return error
    reason = _REASONS.get(error.errno or 0) or (error.strerror or str(error)).lower()
    return WriteError(path, error.errno, reason)


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
    On any exception the temporary file is removed and ``final_path`` is left untouched. Creating, filling (an
    OSError the body raises about the temporary file or with a write errno), syncing and renaming failures are
    raised as :class:`WriteError` naming ``final_path``.
    """
    final_path = Path(final_path)
    try:
        final_path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{final_path.name}.", suffix=".tmp", dir=final_path.parent)
        os.close(handle)
    except OSError as error:
        raise write_error(final_path, error) from None
    temp_path = Path(temp_name)
    try:
        try:
            yield temp_path
        except OSError as error:
            if isinstance(error, WriteError):
                raise
            if error.errno in WRITE_ERRNOS or error.filename in (temp_name, str(temp_path)):
                raise write_error(final_path, error) from None
            raise
        try:
            os.chmod(temp_path, _FILE_MODE)
            with open(temp_path, "rb") as written:
                os.fsync(written.fileno())
            os.replace(temp_path, final_path)
        except OSError as error:
            raise write_error(final_path, error) from None
        _fsync_directory(final_path.parent)
    finally:
        with contextlib.suppress(OSError):
            temp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(final_path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final_path``; on success sync its files and rename it to
    ``final_path`` (a folder already there is moved aside first and removed after: for that instant neither is
    there, but no reader ever sees a half-written folder). On any exception the temporary folder is removed."""
    final_path = Path(final_path)
    try:
        final_path.parent.mkdir(parents=True, exist_ok=True)
        temp_path = Path(tempfile.mkdtemp(prefix=f".{final_path.name}.", suffix=".tmp", dir=final_path.parent))
    except OSError as error:
        raise write_error(final_path, error) from None
    try:
        try:
            yield temp_path
        except OSError as error:
            if isinstance(error, WriteError) or error.errno not in WRITE_ERRNOS:
                raise
            raise write_error(final_path, error) from None
        try:
            _sync_tree(temp_path)
            aside = final_path.with_name(f"{temp_path.name}.old")
            replaced = final_path.exists() or final_path.is_symlink()
            if replaced:
                os.rename(final_path, aside)
            try:
                os.rename(temp_path, final_path)
            except OSError:
                if replaced:
                    os.rename(aside, final_path)
                raise
        except OSError as error:
            raise write_error(final_path, error) from None
        _fsync_directory(final_path.parent)
        if replaced:
            _remove(aside)
    finally:
        _remove(temp_path)


def _sync_tree(folder: Path) -> None:
    """Give ``folder``'s files and folders the modes plain creation would, and sync them to disk."""
    for path in [folder, *sorted(folder.rglob("*"))]:
        if path.is_dir():
            os.chmod(path, _FILE_MODE | ((_FILE_MODE & 0o444) >> 2))  # r -> r-x: folders others may read
            _fsync_directory(path)
        else:
            os.chmod(path, _FILE_MODE)
            with open(path, "rb") as written:
                os.fsync(written.fileno())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def atomic_write_bytes(final_path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(final_path) as temp_path:
        temp_path.write_bytes(data)


def atomic_write_text(final_path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(final_path, text.encode("utf-8"))


def check_writable(
    directory: str | os.PathLike[str],
    *,
    files: Iterable[str | os.PathLike[str]] = (),
    needed_bytes: int = 0,
    create: bool = True,
) -> None:
    """Raise WriteError unless ``directory`` takes new files and replacing ``files`` works.

    ``directory`` is created when missing; with ``create=False`` its nearest existing ancestor is checked instead
    (where the missing folders would be created), and nothing is left behind.

    A probe file is created, written, synced and removed (read-only file systems, folders without permission,
    immutable folders and full disks all fail here); the free space must cover ``needed_bytes``; and every one
    of ``files`` that exists must not be immutable or append-only (a rename over it would fail at the end).
    """
    directory = Path(directory)
    if create:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise write_error(directory, error) from None
    else:
        directory = nearest_existing(directory)
    if not directory.is_dir():
        raise WriteError(directory, errno.ENOTDIR, "not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".cifar-edge-write-check.", suffix=".tmp", dir=directory)
    except OSError as error:
        raise write_error(directory, error) from None
    try:
        os.write(handle, b"\0" * _PROBE_BYTES)
        os.fsync(handle)
    except OSError as error:
        raise write_error(directory, error) from None
    finally:
        os.close(handle)
        with contextlib.suppress(OSError):
            os.unlink(probe)
    if needed_bytes > 0:
        try:
            stats = os.statvfs(directory)
        except (OSError, AttributeError):  # no statvfs on this platform: the write itself will tell
            stats = None
        if stats is not None and stats.f_bavail * stats.f_frsize < needed_bytes:
            free = stats.f_bavail * stats.f_frsize
            raise WriteError(
                directory, errno.ENOSPC, f"no space left on device ({free:,} bytes free, about {needed_bytes:,} needed)"
            )
    for path in files:
        if _is_locked_down(Path(path)):
            raise WriteError(path, errno.EPERM, "the file is immutable or append-only (chattr -i / -a to allow it)")


def nearest_existing(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or the closest of its ancestors that exists."""
    current = Path(os.path.abspath(path))
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _is_locked_down(path: Path) -> bool:
    """True when ``path`` exists and carries the immutable or append-only attribute (Linux)."""
    if not sys.platform.startswith("linux") or not path.is_file():
        return False
    try:
        import fcntl

        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except (ImportError, OSError):
        return False
    try:
        flags = int.from_bytes(fcntl.ioctl(fd, _FS_IOC_GETFLAGS, b"\0" * 8)[:4], sys.byteorder)
    except OSError:  # the file system keeps no such flags
        return False
    finally:
        os.close(fd)
    return bool(flags & (_FS_IMMUTABLE_FL | _FS_APPEND_FL))


@contextlib.contextmanager
def exclusive_lock(lock_path: str | os.PathLike[str], what: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``lock_path`` (created, and removed on release) for the duration of the body.

    Does not wait: when another process holds it, raise :class:`LockedError` saying ``what`` is being written.
    Where ``fcntl`` is missing (Windows) the body runs unlocked.
    """
    lock_path = Path(lock_path)
    try:
        import fcntl
    except ImportError:
        yield lock_path
        return
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise write_error(lock_path, error) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockedError(
                    what, error.errno, f"another process is writing it (it holds {lock_path}); try again later"
                ) from None
            raise write_error(lock_path, error) from None
        # The holder before us may have removed the file after we opened it: then our lock guards nothing.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except OSError:
            same = False
        if same:
            break
        os.close(fd)
    with contextlib.suppress(OSError):  # the pid is a courtesy for humans; a full disk must not stop the lock
        os.write(fd, f"{os.getpid()}\n".encode())
    try:
        yield lock_path
    finally:
        with contextlib.suppress(OSError):
            lock_path.unlink()
        os.close(fd)


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
