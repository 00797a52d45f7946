"""Where artifacts go: checked writable before any work, locked while written, parity reports kept in step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from cifar_edge.export.results import Target
from cifar_edge.runtime.common.atomic_io import atomic_write_bytes, check_writable, exclusive_lock
from cifar_edge.runtime.common.names import LOCK_SUFFIX, PARITY_SUFFIX, WEIGHTS_FILE
from cifar_edge.train.run.files import LoadedRun


def check_destinations(targets: list[Target], run: LoadedRun | None = None) -> None:
    """WriteError now, before any work, when an artifact or its parity report could not be written at the end.

    Each destination folder must take a new file with room for its artifacts (estimated as twice the run's weights
    plus 64 KiB each: the graph and metadata around the weights), and an existing artifact or parity report must not
    be immutable (the final rename over it would fail).
    """
    weights = _weights_size(run) if run is not None else 0
    by_folder: dict[Path, list[Target]] = {}
    for target in targets:
        by_folder.setdefault(target.path.parent, []).append(target)
    for folder, group in by_folder.items():
        files = [path for target in group for path in (target.path, parity_path_of(target.path))]
        check_writable(folder, files=files, needed_bytes=len(group) * (2 * weights + 64 * 1024))


def _weights_size(run: LoadedRun) -> int:
    try:
        return (run.run_dir / WEIGHTS_FILE).stat().st_size
    except OSError:
        return 0


def parity_path_of(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + PARITY_SUFFIX)


@contextlib.contextmanager
def artifact_locks(targets: list[Target]) -> Iterator[None]:
    """Hold ``<artifact>.lock`` of every target (in path order) until the body is done; LockedError (exit 5) at
    once when another export holds one: two exports never interleave an artifact and its parity report."""
    with contextlib.ExitStack() as stack:
        for path in sorted({target.path for target in targets}):
            stack.enter_context(exclusive_lock(path.with_name(path.name + LOCK_SUFFIX), path))
        yield


def read_if_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes() if path.is_file() else None
    except OSError:
        return None


def restore(path: Path, previous: bytes | None) -> None:
    """Put ``path`` back as it was (absent when ``previous`` is None), as far as the file system lets us."""
    with contextlib.suppress(OSError):
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write_bytes(path, previous)
