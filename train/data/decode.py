"""Decode many image files into one uint8 array with the runtime's own decoder, on all cores, with progress.

Every image goes through ``cifar_edge.runtime.images.open_image_rgb`` and ``resize_to_contract``, so the pixels the
model trains on are exactly the pixels ``cifar-infer`` will feed it. This module imports no torch, which keeps the
decode worker processes light.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.images import ImageDecodeError
from cifar_edge.runtime.preprocess import file_pixels

# Below this many images a worker pool costs more to start than it saves.
MIN_IMAGES_FOR_POOL = 512
# Images per task sent to a worker: large enough to amortise the inter-process hop, small enough for a live bar.
MAX_CHUNK = 512


@dataclass(frozen=True)
class DecodeFailure:
    index: int  # position in the input list
    reason: str  # one line, without the path


class RateColumn(ProgressColumn):
    """Items per second, e.g. ``9,731 img/s``; a task names its unit with ``add_task(..., unit="files")``."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "img")
        return Text(f"{speed:,.0f} {unit}/s" if speed else f"? {unit}/s", style="progress.data.speed")


@contextlib.contextmanager
def progress_bar(show: bool) -> Iterator[Progress | None]:
    """A rich progress bar on stderr (stdout stays clean for ``--json``), or None when not shown."""
    if not show:
        yield None
        return
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        yield progress


def available_cores() -> int:
    # The affinity mask is what this process may use (containers, taskset); cpu_count is the machine's.
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def decode_images(
    paths: Sequence[str],
    contract: Contract,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
    description: str = "Decoding images",
) -> tuple[np.ndarray, list[DecodeFailure]]:
    """Decode ``paths`` into uint8 ``(N, H, W, 3)`` at the contract's size; unreadable files become failures.

    Rows of failed files are left zero; the caller drops them. ``workers``: processes to use; None = every core
    available (in-process for small inputs); 0 or 1 = in this process. The result does not depend on ``workers``.
    """
    height, width = contract.image_size
    images = np.zeros((len(paths), height, width, 3), dtype=np.uint8)
    failures: list[DecodeFailure] = []
    if workers is None:
        workers = available_cores() if len(paths) >= MIN_IMAGES_FOR_POOL else 1
    task = progress.add_task(description, total=len(paths)) if progress is not None else None
    chunk = max(16, min(MAX_CHUNK, len(paths) // max(1, workers * 8)))
    starts = range(0, len(paths), chunk)

    def store(start: int, decoded: np.ndarray, failed: list[tuple[int, str]]) -> None:
        images[start : start + len(decoded)] = decoded
        failures.extend(DecodeFailure(start + offset, reason) for offset, reason in failed)
        if progress is not None and task is not None:
            progress.advance(task, len(decoded))

    if workers <= 1 or len(paths) <= chunk:
        for start in starts:
            store(start, *decode_chunk(list(paths[start : start + chunk]), contract))
    else:
        _decode_in_pool(paths, contract, workers=workers, starts=starts, chunk=chunk, store=store)
    failures.sort(key=lambda failure: failure.index)
    if progress is not None and task is not None:
        progress.refresh()
    return images, failures


def _decode_in_pool(
    paths: Sequence[str],
    contract: Contract,
    *,
    workers: int,
    starts: range,
    chunk: int,
    store: Callable[[int, np.ndarray, list[tuple[int, str]]], None],
) -> None:
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context())
    try:
        with warnings.catch_warnings():
            # Python >= 3.12 warns about any fork in a threaded process; see _pool_context for why this one is safe.
            warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks", category=DeprecationWarning)
            pending: dict[Future, int] = {
                pool.submit(decode_chunk, list(paths[start : start + chunk]), contract): start for start in starts
            }
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                store(pending.pop(future), *future.result())
    except BaseException:
        # Ctrl-C or a dead worker: do not wait for the remaining chunks.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _pool_context() -> multiprocessing.context.BaseContext:
    # Linux: fork, as torch's DataLoader does. A fork server or spawn would re-run the caller's main script in every
    # worker, which breaks any script without an ``if __name__ == "__main__"`` guard. Forking a parent that runs
    # threads (rich's refresh thread, torch's pools) is safe here because the child only runs Pillow and NumPy code
    # on its own data and never touches a lock those threads could hold. Elsewhere: the platform's default.
    if sys.platform == "linux":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def decode_chunk(paths: list[str], contract: Contract) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Worker body: decode a list of files; returns the pixels and ``(offset, reason)`` for each failure."""
    height, width = contract.image_size
    out = np.zeros((len(paths), height, width, 3), dtype=np.uint8)
    failed: list[tuple[int, str]] = []
    for offset, path in enumerate(paths):
        try:
            out[offset] = file_pixels(path, contract)
        except ImageDecodeError as error:
            failed.append((offset, first_line(error.reason, limit=None)))
        except Image.DecompressionBombError as error:
            failed.append((offset, first_line(f"refused as a possible decompression bomb ({error})", limit=None)))
        except Exception as error:  # one odd file must not sink a 50,000-image decode; it is reported, not hidden
            failed.append((offset, first_line(f"cannot decode image ({type(error).__name__}: {error})", limit=None)))
    return out, failed
