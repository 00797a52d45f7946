"""Labelled images: an ImageFolder tree (``<class>/<image>``), the one rule for which of its folders a command reads,
and the images decoded with the runtime's own path (no torch), for cifar-eval, cifar-export's gate and cifar-bench.

Which folder each command reads (docs/evaluation.md, "Data"; :func:`resolve_image_folder`, the one resolver):

- ``PATH/train/`` is what training learns from, and what int8 calibration reads.
- The held-out folder depends on the purpose. Checking a model while it is being made (``cifar-train``'s
  validation split, ``cifar-export``'s parity gate) reads ``PATH/val/``, else ``PATH/test/``: the test images
  stay unseen until the end. Measuring the finished model (``cifar-eval``) reads ``PATH/test/``, else
  ``PATH/val/``: the score reported is on the test set whenever there is one.
- With neither, ``PATH/<class>/*`` itself. ``cifar-eval`` refuses a tree holding only ``train/`` (evaluating on
  training images is almost always a mistake; pass ``PATH/train`` to do it on purpose).

Class folders are matched to the model's class names by name, never by position: the model may know classes the
folder lacks (their per-class accuracy is then empty), but a folder the model does not know is a one-line
:class:`LabelledDataError`. Files are found as ``cifar-infer`` finds them in a folder (recursive, extensions
Pillow can open, hidden names skipped, sorted, symlinked folders followed once each). Images are decoded exactly
as the runtime decodes them (``preprocess.file_pixels``); a file that does not decode is reported and skipped.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.image_files import Warn, image_extensions, walk_folders, warn_on_stderr
from cifar_edge.runtime.images import ImageDecodeError
from cifar_edge.runtime.predictions import Failure
from cifar_edge.runtime.preprocess import file_pixels
from cifar_edge.runtime.session import usable_cpu_count

TRAIN_FOLDER = "train"
# The held-out folders each purpose reads, first choice first (the rule in the module docstring).
Purpose = Literal["validation", "evaluation"]
HELD_OUT_PREFERENCE: dict[Purpose, tuple[str, str]] = {"validation": ("val", "test"), "evaluation": ("test", "val")}
EXPECTED_LAYOUT = "expected PATH/test/<class>/*, PATH/val/<class>/* or PATH/<class>/*"


@dataclass(frozen=True)
class FolderLayout:
    """The folders of an ImageFolder tree one purpose reads (:func:`resolve_image_folder`)."""

    root: Path  # PATH as given
    train: Path | None  # PATH/train/, when it is a folder
    held_out: Path | None  # PATH/val/ or PATH/test/, the purpose's first choice of those present
    unused: tuple[str, ...]  # held-out folder names present but not chosen (e.g. ("test",) for validation)


def resolve_image_folder(path: str | os.PathLike[str], purpose: Purpose) -> FolderLayout:
    """Which sub-folders of the folder ``path`` hold the training and the held-out images for ``purpose``."""
    root = Path(path)
    present = [name for name in HELD_OUT_PREFERENCE[purpose] if (root / name).is_dir()]
    train = root / TRAIN_FOLDER
    return FolderLayout(
        root=root,
        train=train if train.is_dir() else None,
        held_out=root / present[0] if present else None,
        unused=tuple(present[1:]),
    )


class LabelledFiles(NamedTuple):
    files: list[Path]  # class by class, sorted within each class
    labels: np.ndarray  # int64 indices into the model's class names


class LabelledDataError(ValueError):
    """The labelled data cannot be used; ``str()`` is one line naming the folder and the problem (exit code 2)."""


@dataclass(frozen=True)
class ImageBatch:
    """Decoded images of one batch: ``indices`` into the data set, ``images`` uint8 (n, H, W, 3) in that order."""

    indices: np.ndarray
    images: np.ndarray
    failures: list[tuple[int, Failure]] = field(default_factory=list)


class LabelledImages:
    """A labelled image set: ``labels`` index the model's ``class_names``; ``sources`` name each image.

    Subclasses provide :meth:`batches` (decoded images in order) and :meth:`image` (one image again, for plots).
    """

    def __init__(
        self, labels: np.ndarray, sources: list[str], class_names: tuple[str, ...], description: dict[str, Any]
    ) -> None:
        if len(labels) != len(sources):
            raise ValueError(f"{len(labels)} labels for {len(sources)} images")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.sources = sources
        self.class_names = tuple(class_names)
        # JSON-serialisable facts for eval.json: source, root, layout, counts.
        self.description = description

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int) -> Iterator[ImageBatch]:
        raise NotImplementedError

    def image(self, index: int) -> np.ndarray:
        raise NotImplementedError


class ArrayImages(LabelledImages):
    """Images already decoded into a uint8 (N, H, W, 3) array at the contract size (e.g. CIFAR-10's test split)."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        class_names: tuple[str, ...],
        description: dict[str, Any],
        source_name: str = "image",
    ) -> None:
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 (N, H, W, 3) images, got {images.dtype} {images.shape}")
        sources = [f"{source_name}[{index}]" for index in range(len(images))]
        super().__init__(labels, sources, class_names, description)
        self.images = images

    def batches(self, batch_size: int) -> Iterator[ImageBatch]:
        for start in range(0, len(self.images), batch_size):
            stop = min(start + batch_size, len(self.images))
            yield ImageBatch(np.arange(start, stop), self.images[start:stop])

    def image(self, index: int) -> np.ndarray:
        return np.asarray(self.images[index])


class FolderImages(LabelledImages):
    """Image files decoded on demand with the runtime's decoder, in a thread pool, one batch ahead."""

    def __init__(
        self,
        files: list[Path],
        labels: np.ndarray,
        contract: Contract,
        description: dict[str, Any],
        *,
        decode_workers: int | None = None,
        max_pixels: int | None = None,
    ) -> None:
        super().__init__(labels, [str(path) for path in files], contract.class_names, description)
        self.files = files
        self.contract = contract
        self.decode_workers = decode_workers or usable_cpu_count()
        self.max_pixels = max_pixels

    def decode(self, index: int) -> np.ndarray:
        """File ``index`` -> uint8 (H, W, 3) at the contract size; ImageDecodeError when it cannot be decoded."""
        return file_pixels(self.files[index], self.contract, max_pixels=self.max_pixels)

    def image(self, index: int) -> np.ndarray:
        return self.decode(index)

    def batches(self, batch_size: int) -> Iterator[ImageBatch]:
        height, width = self.contract.image_size
        with ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="cifar-eval-decode") as pool:
            # The next batch decodes while the caller runs the model on this one.
            pending: deque[list[tuple[int, Future[np.ndarray]]]] = deque()
            starts = iter(range(0, len(self.files), batch_size))

            def submit_next() -> None:
                start = next(starts, None)
                if start is not None:
                    stop = min(start + batch_size, len(self.files))
                    pending.append([(index, pool.submit(self.decode, index)) for index in range(start, stop)])

            submit_next()
            submit_next()
            while pending:
                jobs = pending.popleft()
                indices, images, failures = [], [], []
                for index, job in jobs:
                    try:
                        images.append(job.result())
                        indices.append(index)
                    except ImageDecodeError as error:
                        failures.append((index, Failure(self.sources[index], error.reason)))
                submit_next()
                stacked = np.stack(images) if images else np.zeros((0, height, width, 3), dtype=np.uint8)
                yield ImageBatch(np.asarray(indices, dtype=np.int64), stacked, failures)


def evaluation_folder(path: str | os.PathLike[str]) -> Path:
    """The folder whose sub-folders are the classes cifar-eval measures, by the rule above; LabelledDataError when
    there is none."""
    root = Path(path)
    expected = f"--data takes 'cifar10' or an image folder ({EXPECTED_LAYOUT})"
    if not root.exists():
        raise LabelledDataError(f"{root}: no such folder; {expected}")
    if not root.is_dir():
        raise LabelledDataError(f"{root}: not a folder; {expected}")
    layout = resolve_image_folder(root, "evaluation")
    if layout.held_out is not None:
        return layout.held_out
    if layout.train is not None:
        raise LabelledDataError(
            f"{root}: has train/ but no test/ or val/ folder; evaluate on held-out images "
            f"(or pass {layout.train} to evaluate on the training images on purpose)"
        )
    return root


def load_labelled_folder(
    path: str | os.PathLike[str],
    contract: Contract,
    *,
    decode_workers: int | None = None,
    max_pixels: int | None = None,
    limit: int | None = None,
    warn: Warn | None = None,
) -> FolderImages:
    """List the labelled files under ``path`` for a model with ``contract``; LabelledDataError when unusable.

    ``limit`` keeps an evenly spread, class-stratified subset of that many files (quick runs). ``warn`` gets one
    line per symlinked folder that is not read again (default: stderr); they are listed in the description too.
    """
    root, class_root = Path(path), evaluation_folder(path)
    skipped: list[str] = []

    def note(message: str) -> None:
        skipped.append(message)
        (warn or warn_on_stderr)(message)

    files, label_array = list_labelled_files(class_root, contract, warn=note)
    if not files:
        raise LabelledDataError(f"{class_root}: its class folders hold no image files")
    if limit is not None and limit < len(files):
        keep = stratified_subset(label_array, limit)
        files = [files[index] for index in keep]
        label_array = label_array[keep]
    present = set(np.unique(label_array).tolist())
    description = {
        "source": "folder",
        "root": str(root.resolve()),
        "class_folder": str(class_root.resolve()),
        "layout": "<class>/" if class_root == root else f"{class_root.name}/<class>/",
        "images": len(files),
        "classes_present": [name for index, name in enumerate(contract.class_names) if index in present],
        "classes_missing": [name for index, name in enumerate(contract.class_names) if index not in present],
        "skipped_folders": skipped,  # symlinked folders not read again (loops, second paths), one line each
    }
    return FolderImages(files, label_array, contract, description, decode_workers=decode_workers, max_pixels=max_pixels)


def list_labelled_files(class_root: Path, contract: Contract, warn: Warn | None = None) -> LabelledFiles:
    """Image files under ``class_root/<class>/`` (recursive, sorted) and their label indices in ``contract``.

    Symlinked folders are followed, each real folder once (a loop or a second path is skipped with ``warn``).
    Raises LabelledDataError when there are no class folders or a folder names a class the model does not know.
    """
    folders = sorted(
        entry.name for entry in os.scandir(class_root) if entry.is_dir() and not entry.name.startswith(".")
    )
    if not folders:
        raise LabelledDataError(f"{class_root}: holds no class folders; {EXPECTED_LAYOUT}")
    unknown = [name for name in folders if name not in contract.class_names]
    if unknown:
        listed = ", ".join(repr(name) for name in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise LabelledDataError(
            f"{class_root}: class folder{'s' if len(unknown) > 1 else ''} {listed} "
            f"{'are' if len(unknown) > 1 else 'is'} not a class of this model "
            f"(the model knows: {', '.join(contract.class_names)})"
        )
    files: list[Path] = []
    labels: list[int] = []
    extensions = image_extensions()
    walk = walk_folders([class_root / name for name in folders], skip_hidden=True, warn=warn)
    for index, directory, names in walk:
        found = [Path(directory) / name for name in names if os.path.splitext(name)[1].lower() in extensions]
        files.extend(found)
        labels.extend([contract.class_names.index(folders[index])] * len(found))
    return LabelledFiles(files, np.asarray(labels, dtype=np.int64))


def stratified_subset(labels: np.ndarray, limit: int) -> np.ndarray:
    """Sorted indices of ``limit`` items, taken round-robin across classes (first items of each class first)."""
    if limit >= len(labels):
        return np.arange(len(labels))
    by_class = [np.flatnonzero(labels == value).tolist() for value in np.unique(labels)]
    chosen: list[int] = []
    position = 0
    while len(chosen) < limit:
        for members in by_class:
            if position < len(members) and len(chosen) < limit:
                chosen.append(members[position])
        position += 1
    return np.sort(np.asarray(chosen, dtype=np.int64))
