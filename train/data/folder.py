"""Find the images of an ImageFolder tree: ``PATH/train/<class>/*`` (+ optional ``PATH/val/`` or ``PATH/test/``),
or ``PATH/<class>/*`` when that reading is unambiguous. Discovery only; decoding lives in ``data_decode``.

Class names are the sorted class folder names and files are listed exactly as torchvision's ``ImageFolder`` does
(same order, same extensions), except that hidden folders (``.ipynb_checkpoints``, ``.git``) are not classes and
that each real folder is read once: a symlink loop is skipped with a warning line instead of multiplying the images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from cifar_edge.runtime.image_files import walk_folder, walk_folders
from cifar_edge.runtime.labelled import HELD_OUT_PREFERENCE, resolve_image_folder
from cifar_edge.train.data import DataError
from cifar_edge.train.data.split import first_per_class

# Held-out folders we accept as the validation split, in order of preference (the one rule: runtime/labelled.py).
HELD_OUT_NAMES = HELD_OUT_PREFERENCE["validation"]
EXPECTED_LAYOUT = "expected PATH/train/<class>/* (plus optional PATH/val/<class>/*) or PATH/<class>/*"


@dataclass(frozen=True)
class ImageFolderFiles:
    root: Path  # absolute dataset root (the --data PATH)
    layout: str  # "train/", "train/ + val/", "train/ + test/" or "<class>/" (no train/ folder)
    class_names: tuple[str, ...]
    train_files: list[str]  # absolute paths, class by class, sorted within each class
    train_labels: np.ndarray  # int64
    held_out_name: str | None  # "val", "test" or None
    held_out_files: list[str]
    held_out_labels: np.ndarray  # int64
    unused_folders: tuple[str, ...]  # e.g. ("test",) when val/ was preferred


def find_image_folder_files(path: str | os.PathLike[str], limit_per_class: int | None = None) -> ImageFolderFiles:
    """List a dataset's files and labels, or raise DataError with one line naming the folder and the problem."""
    root = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if not root.exists():
        raise DataError(f"{root}: no such folder; --data takes 'cifar10' or an image folder ({EXPECTED_LAYOUT})")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; --data takes 'cifar10' or an image folder ({EXPECTED_LAYOUT})")

    folders = resolve_image_folder(root, "validation")
    held_out_name = folders.held_out.name if folders.held_out is not None else None
    if folders.train is not None:
        train_dir = folders.train
        layout = "train/" + (f" + {held_out_name}/" if held_out_name else "")
    else:
        _check_flat_layout(root)
        train_dir, held_out_name, layout = root, None, "<class>/"

    class_names = _class_folders(train_dir)
    if len(class_names) < 2:
        found = f" ({', '.join(class_names)})" if class_names else ""
        raise DataError(
            f"{train_dir}: found {len(class_names)} class folder{'s' if len(class_names) != 1 else ''}{found}; "
            f"need at least 2, one subfolder of images per class ({EXPECTED_LAYOUT})"
        )
    class_to_index = {name: index for index, name in enumerate(class_names)}
    train_files, train_labels = _list_files(train_dir, class_to_index, limit_per_class)
    empty = sorted(set(class_names) - {class_names[label] for label in set(train_labels.tolist())})
    if empty:
        raise DataError(f"{train_dir}: class folder(s) {', '.join(empty)} hold no images ({_extensions_text()})")

    held_out_files: list[str] = []
    held_out_labels = np.zeros(0, dtype=np.int64)
    if held_out_name is not None:
        held_out_dir = root / held_out_name
        unknown = sorted(set(_class_folders(held_out_dir)) - set(class_names))
        if unknown:
            raise DataError(
                f"{held_out_dir}: class folder(s) {', '.join(unknown)} do not exist in {train_dir} "
                f"(classes: {', '.join(class_names)})"
            )
        held_out_files, held_out_labels = _list_files(held_out_dir, class_to_index, limit_per_class)
        if not held_out_files:
            raise DataError(
                f"{held_out_dir}: holds no images in class folders ({_extensions_text()}); "
                f"fill it as {held_out_name}/<class>/* or remove it to carve validation out of train/"
            )
    return ImageFolderFiles(
        root=root,
        layout=layout,
        class_names=tuple(class_names),
        train_files=train_files,
        train_labels=train_labels,
        held_out_name=held_out_name,
        held_out_files=held_out_files,
        held_out_labels=held_out_labels,
        unused_folders=folders.unused,
    )


def _check_flat_layout(root: Path) -> None:
    """``PATH/<class>/*`` is accepted only when every (non-hidden) subfolder holds images."""
    folders = _class_folders(root)
    misplaced = [name for name in HELD_OUT_NAMES if name in folders]
    if misplaced:
        raise DataError(f"{root}: has {misplaced[0]}/ but no train/ folder; {EXPECTED_LAYOUT}")
    if not folders:
        raise DataError(f"{root}: holds no class folders; {EXPECTED_LAYOUT}")
    without_images = [name for name in folders if not _holds_images(root / name)]
    if without_images:
        raise DataError(
            f"{root}: has no train/ folder and its subfolder(s) {', '.join(without_images)} hold no images, "
            f"so it is not a PATH/<class>/* tree either; {EXPECTED_LAYOUT}"
        )


def _class_folders(directory: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(directory) if entry.is_dir() and not entry.name.startswith("."))


def _holds_images(directory: Path) -> bool:
    for _, file_names in walk_folder(directory, warn=lambda _message: None):  # the listing below warns
        if any(has_file_allowed_extension(name, IMG_EXTENSIONS) for name in file_names):
            return True
    return False


def _list_files(
    directory: Path, class_to_index: dict[str, int], limit_per_class: int | None
) -> tuple[list[str], np.ndarray]:
    samples = _samples(directory, class_to_index)
    files = [path for path, _ in samples]
    labels = np.fromiter((label for _, label in samples), dtype=np.int64, count=len(samples))
    if limit_per_class is not None:
        keep = first_per_class(labels, limit_per_class)
        files = [files[index] for index in keep]
        labels = labels[keep]
    return files, labels


def _samples(directory: Path, class_to_index: dict[str, int]) -> list[tuple[str, int]]:
    """torchvision's ``make_dataset`` (same order: class by class, folders sorted by path, files sorted, same
    extension test), except that each real folder is read once: its ``os.walk(followlinks=True)`` follows a symlink
    loop until the path is too long, reading the same images dozens of times. Skipped links: a warning each."""
    samples: list[tuple[str, int]] = []
    class_folders = [os.path.join(directory, name) for name in sorted(class_to_index)]
    listing: dict[int, list[tuple[str, list[str]]]] = {}
    for index, folder, names in walk_folders(class_folders):
        listing.setdefault(index, []).append((folder, names))
    for index, name in enumerate(sorted(class_to_index)):
        for folder, names in sorted(listing.get(index, [])):
            samples.extend(
                (os.path.join(folder, file_name), class_to_index[name])
                for file_name in names
                if has_file_allowed_extension(file_name, IMG_EXTENSIONS)
            )
    return samples


def _extensions_text() -> str:
    return "image extensions: " + " ".join(IMG_EXTENSIONS)
