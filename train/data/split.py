"""What a data request is: ``load_splits``'s arguments, their checks and recorded spec, and the seeded split.

The split is a seeded, stratified train/validation split of a labelled array, reproducible across NumPy versions.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

from cifar_edge.runtime.contract import RESIZE_METHODS
from cifar_edge.train.data import DataError


def check_arguments(
    val_fraction: float,
    seed: int,
    image_size: tuple[int, int] | list[int],
    resize_method: str,
    limit_per_class: int | None,
) -> tuple[int, int]:
    """The checked ``image_size`` as (height, width); DataError (one line) for any unusable argument."""
    if not isinstance(val_fraction, numbers.Real) or not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}")
    size = tuple(image_size) if isinstance(image_size, tuple | list) else ()
    if len(size) != 2 or not all(isinstance(side, numbers.Integral) and side >= 1 for side in size):
        raise DataError(f"image_size must be (height, width) in pixels, got {image_size!r}")
    if resize_method not in RESIZE_METHODS:
        raise DataError(f"resize_method must be one of {', '.join(RESIZE_METHODS)}, got {resize_method!r}")
    if limit_per_class is not None and (not isinstance(limit_per_class, numbers.Integral) or limit_per_class < 1):
        raise DataError(f"limit_per_class must be an integer >= 1, got {limit_per_class!r}")
    return int(size[0]), int(size[1])


def base_spec(
    *,
    val_fraction: float,
    seed: int,
    image_size: tuple[int, int],
    resize_method: str,
    limit_per_class: int | None,
    cache_dir: str | Path | None,
) -> dict[str, Any]:
    """``description["spec"]`` before the source is known: the loader fills in ``data`` and ``data_root``."""
    spec: dict[str, Any] = {
        "data": "cifar10",
        "data_root": None,
        "val_fraction": val_fraction,
        "seed": seed,
        "image_size": list(image_size),
        "resize_method": resize_method,
        "limit_per_class": limit_per_class,
    }
    if cache_dir is not None:  # never changes the arrays; kept so a re-load finds the same cache instead of decoding
        spec["cache_dir"] = os.path.abspath(Path(cache_dir).expanduser())
    return spec


def stratified_split(
    labels: np.ndarray, num_classes: int, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(train_indices, val_indices)``, both sorted ascending, disjoint, covering every index.

    Each class gives ``round(count * val_fraction)`` of its samples to validation (half rounds up), but always keeps
    at least one for training. The choice depends only on ``seed``, the class index and the labels, so the same
    arguments give the same split on any machine, and changing one class's images does not reshuffle the others.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if seed < 0:
        raise DataError(f"seed must be >= 0, got {seed}")
    labels = np.asarray(labels)
    is_val = np.zeros(len(labels), dtype=bool)
    for class_index in range(num_classes):
        members = np.flatnonzero(labels == class_index)
        count = len(members)
        val_count = min(math.floor(count * val_fraction + 0.5), max(count - 1, 0))
        if val_count == 0:
            continue
        is_val[members[_permutation(count, seed, class_index)[:val_count]]] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _permutation(count: int, seed: int, class_index: int) -> np.ndarray:
    # Generator.permutation's algorithm may change between NumPy releases; the raw PCG64 stream of a SeedSequence is
    # guaranteed stable, so sorting by it gives a permutation that a later export on another machine reproduces.
    keys = np.random.PCG64(np.random.SeedSequence([seed, class_index])).random_raw(count)
    return np.argsort(keys, kind="stable")


def first_per_class(labels: np.ndarray, limit: int) -> np.ndarray:
    """Indices (ascending) of the first ``limit`` samples of every class, in their original order."""
    if limit < 1:
        raise DataError(f"limit_per_class must be >= 1, got {limit}")
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    rank_in_class = np.arange(len(labels)) - np.searchsorted(sorted_labels, sorted_labels, side="left")
    return np.sort(order[rank_in_class < limit])
