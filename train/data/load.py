"""Training data as uint8 arrays: CIFAR-10 through torchvision, or any ImageFolder tree.

Public entry point: :func:`load_splits`. Everything is decoded once into a content-keyed uint8 cache, so the
training loop can keep the whole dataset on its device and augment there in batches.

Reproducibility: the same arguments always give bit-identical arrays in the same order. Training stores
``description["spec"]`` (the arguments, with paths made absolute) in run.json, and the export tool calls
``load_splits(**spec)`` to get the very same validation images back.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cifar_edge.runtime.contract import Contract
from cifar_edge.train.data import DataError
from cifar_edge.train.data.cache import (
    DecodedFolder,
    cache_file,
    content_key,
    default_cache_dir,
    read_cache,
    relative_path,
    write_cache,
)
from cifar_edge.train.data.cifar10 import cifar10_train_pool, load_cifar10_test, resolve_data_root
from cifar_edge.train.data.decode import decode_images, progress_bar
from cifar_edge.train.data.folder import ImageFolderFiles, find_image_folder_files
from cifar_edge.train.data.split import base_spec, check_arguments, stratified_split

__all__ = ["DataError", "Splits", "load_cifar10_test", "load_splits"]

logger = logging.getLogger(__name__)

# How many skipped files are named in the warning line and in description["skipped"]["first"].
SKIPPED_IN_LOG = 3
SKIPPED_IN_DESCRIPTION = 10


@dataclass(frozen=True)
class Splits:
    train_images: np.ndarray  # uint8 (N, H, W, 3), RGB, already at the contract's image size
    train_labels: np.ndarray  # int64 (N,)
    val_images: np.ndarray  # uint8 (M, H, W, 3)
    val_labels: np.ndarray  # int64 (M,)
    class_names: tuple[str, ...]
    # JSON-serialisable facts for run.json: source, root, cache key, counts, skipped files, how val was made.
    description: dict[str, Any] = field(default_factory=dict)


def load_splits(
    data: str = "cifar10",
    data_root: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    image_size: tuple[int, int] = (32, 32),
    resize_method: str = "bilinear",
    cache_dir: str | Path | None = None,
    show_progress: bool = True,
    *,
    limit_per_class: int | None = None,
    workers: int | None = None,
) -> Splits:
    """``data`` is "cifar10" (torchvision, downloaded into ``data_root`` when missing) or an ImageFolder path.

    - ``data_root``: CIFAR-10's folder (default ``$CIFAR_EDGE_DATA`` or ``~/.cache/cifar-edge/data``); unused for paths.
    - ``val_fraction``/``seed``: the seeded, stratified share of train held out for validation; ignored when the
      folder has ``val/`` (preferred) or ``test/``. 0 gives an empty validation split.
    - ``image_size`` (height, width) and ``resize_method``: the preprocessing contract's; images of other sizes are
      resized with the runtime's own code.
    - ``cache_dir``: decoded-folder cache (default ``$CIFAR_EDGE_CACHE`` or ``~/.cache/cifar-edge``).
    - ``limit_per_class``: keep only the first N images of each class (per split folder), for quick runs.
    - ``workers``: decode processes; None = all available cores. Never changes the result.

    Raises DataError (one line) when the data cannot be used. Unreadable images are skipped and reported.
    """
    started = time.perf_counter()
    image_size = check_arguments(val_fraction, seed, image_size, resize_method, limit_per_class)
    val_fraction, seed = float(val_fraction), int(seed)  # NumPy scalars in, plain JSON numbers in the record
    limit_per_class = None if limit_per_class is None else int(limit_per_class)
    spec = base_spec(
        val_fraction=val_fraction,
        seed=seed,
        image_size=image_size,
        resize_method=resize_method,
        limit_per_class=limit_per_class,
        cache_dir=cache_dir,
    )
    if str(data) == "cifar10":
        source = _cifar10_source(data_root, spec)
    else:
        source = _folder_source(data, spec, cache_dir=cache_dir, show_progress=show_progress, workers=workers)
    split, how_val = _split(source, val_fraction, seed)
    return replace(split, description=_describe(source, spec, split, how_val, started))


@dataclass(frozen=True)
class _Source:
    """One source's arrays before the train/val split, and the facts that open its description."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    description: dict[str, Any]
    held_out_images: np.ndarray | None = None  # the val/ or test/ folder's, when the source has one
    held_out_labels: np.ndarray | None = None
    held_out_name: str | None = None


def _cifar10_source(data_root: str | Path | None, spec: dict[str, Any]) -> _Source:
    """CIFAR-10's training batches (the first ``limit_per_class`` of each class), at the spec's image size."""
    root = resolve_data_root(data_root)
    spec["data_root"] = str(root)
    size = (spec["image_size"][0], spec["image_size"][1])
    images, labels, class_names = cifar10_train_pool(root, size, spec["resize_method"], spec["limit_per_class"])
    description: dict[str, Any] = {
        "source": "cifar10",
        "root": str(root),
        "layout": "torchvision CIFAR10 (python batches, MD5-verified)",
        "cache": {"status": "not used", "why": "torchvision's batches are already uint8 arrays"},
        "skipped": {"count": 0, "first": []},
    }
    return _Source(images, labels, class_names, description)


def _folder_source(
    data: str | Path,
    spec: dict[str, Any],
    *,
    cache_dir: str | Path | None,
    show_progress: bool,
    workers: int | None,
) -> _Source:
    """An ImageFolder tree, decoded through the cache; its val/ or test/ folder, if any, as the held-out arrays."""
    files = find_image_folder_files(data, spec["limit_per_class"])
    spec["data"] = str(files.root)
    size = (spec["image_size"][0], spec["image_size"][1])
    contract = Contract(files.class_names, image_size=size, resize_method=spec["resize_method"])
    decoded, cache_facts = _decode_folder_cached(files, contract, cache_dir, show_progress, workers)
    description: dict[str, Any] = {
        "source": str(files.root),
        "root": str(files.root),
        "layout": files.layout,
        "cache": cache_facts,
        "skipped": _report_skipped(files, decoded),
    }
    if files.unused_folders:
        description["unused_folders"] = [f"{name}/" for name in files.unused_folders]
    source = _Source(decoded.train_images, decoded.train_labels, decoded.class_names, description)
    if files.held_out_name is None:
        return source
    return replace(
        source,
        held_out_images=decoded.held_out_images,
        held_out_labels=decoded.held_out_labels,
        held_out_name=files.held_out_name,
    )


def _split(source: _Source, val_fraction: float, seed: int) -> tuple[Splits, dict[str, Any]]:
    """(the splits, how val was made): the held-out folder when there is one, else a seeded, stratified fraction of
    the training pool."""
    images, labels, names = source.images, source.labels, tuple(source.class_names)
    if source.held_out_images is None or source.held_out_labels is None:
        train_index, val_index = stratified_split(labels, len(names), val_fraction, seed)
        how_val = {"method": "stratified_fraction", "fraction": val_fraction, "seed": seed, "stratified": True}
        split = Splits(
            train_images=images[train_index],
            train_labels=labels[train_index],
            val_images=images[val_index],
            val_labels=labels[val_index],
            class_names=names,
        )
        return split, how_val
    how_val = {"method": "held_out_folder", "folder": f"{source.held_out_name}/", "fraction": None, "seed": None}
    split = Splits(
        train_images=images,
        train_labels=labels,
        val_images=source.held_out_images,
        val_labels=source.held_out_labels,
        class_names=names,
    )
    return split, how_val


def _describe(
    source: _Source, spec: dict[str, Any], split: Splits, how_val: dict[str, Any], started: float
) -> dict[str, Any]:
    """The source's facts completed with the contract, the counts, how val was made, the spec and the time taken."""
    class_names, description = source.class_names, source.description
    description.update(
        class_names=list(class_names),
        image_size=list(spec["image_size"]),
        resize_method=spec["resize_method"],
        limit_per_class=spec["limit_per_class"],
        counts={"train": len(split.train_labels), "val": len(split.val_labels)},
        class_counts={
            "train": _class_counts(split.train_labels, class_names),
            "val": _class_counts(split.val_labels, class_names),
        },
        val=how_val,
        spec=spec,
        seconds=round(time.perf_counter() - started, 3),
    )
    return description


def _decode_folder_cached(
    files: ImageFolderFiles,
    contract: Contract,
    cache_dir: str | Path | None,
    show_progress: bool,
    workers: int | None,
) -> tuple[DecodedFolder, dict[str, Any]]:
    cache_root = Path(os.path.abspath(Path(cache_dir).expanduser())) if cache_dir is not None else default_cache_dir()
    with progress_bar(show_progress) as progress:
        key = content_key(files, contract, progress)
        path = cache_file(cache_root, key)
        decoded, problem = read_cache(path, key, contract.image_size)
        facts: dict[str, Any] = {"key": key, "path": str(path), "status": "hit"}
        if decoded is None:
            if problem:
                logger.warning("%s: data cache file is damaged (%s); decoding the images again", path, problem)
            facts["status"] = "rebuilt" if problem else "miss"
            decoded = _decode_folder(files, contract, workers, progress)
            write_problem = write_cache(path, key, decoded)
            if write_problem:
                logger.warning("%s", write_problem)
            facts["saved"] = write_problem is None
    _check_decoded(files, decoded)
    return decoded, facts


def _decode_folder(files: ImageFolderFiles, contract: Contract, workers: int | None, progress: Any) -> DecodedFolder:
    paths = files.train_files + files.held_out_files
    images, failures = decode_images(
        paths, contract, workers=workers, progress=progress, description=f"Decoding {len(paths):,} images"
    )
    readable = np.ones(len(paths), dtype=bool)
    readable[[failure.index for failure in failures]] = False
    labels = np.concatenate([files.train_labels, files.held_out_labels])
    in_train = np.arange(len(paths)) < len(files.train_files)

    def pick(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return images[mask & readable], labels[mask & readable]

    train_images, train_labels = pick(in_train)
    held_out_images, held_out_labels = pick(~in_train)
    return DecodedFolder(
        class_names=files.class_names,
        train_images=train_images,
        train_labels=train_labels,
        held_out_images=held_out_images,
        held_out_labels=held_out_labels,
        skipped=tuple((relative_path(paths[failure.index], files.root), failure.reason) for failure in failures),
    )


def _check_decoded(files: ImageFolderFiles, decoded: DecodedFolder) -> None:
    missing = np.flatnonzero(np.bincount(decoded.train_labels, minlength=len(files.class_names)) == 0)
    if len(missing) or (files.held_out_name is not None and len(decoded.held_out_labels) == 0):
        where = (
            f"class(es) {', '.join(files.class_names[index] for index in missing)}"
            if len(missing)
            else f"the {files.held_out_name}/ folder"
        )
        example = f"; e.g. {decoded.skipped[0][0]}: {decoded.skipped[0][1]}" if decoded.skipped else ""
        raise DataError(f"{files.root}: no readable images for {where}{example}")


def _report_skipped(files: ImageFolderFiles, decoded: DecodedFolder) -> dict[str, Any]:
    skipped = decoded.skipped
    if skipped:
        total = len(files.train_files) + len(files.held_out_files)
        named = "; ".join(f"{path} ({reason})" for path, reason in skipped[:SKIPPED_IN_LOG])
        more = f"; and {len(skipped) - SKIPPED_IN_LOG} more" if len(skipped) > SKIPPED_IN_LOG else ""
        logger.warning(
            "skipped %d unreadable image(s) of %d under %s: %s%s", len(skipped), total, files.root, named, more
        )
    return {
        "count": len(skipped),
        "first": [
            {"path": str(files.root / path), "reason": reason} for path, reason in skipped[:SKIPPED_IN_DESCRIPTION]
        ],
    }


def _class_counts(labels: np.ndarray, class_names: tuple[str, ...]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(class_names)).tolist()
    return dict(zip(class_names, counts, strict=True))
