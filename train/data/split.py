"""Seeded, stratified train/validation split of a labelled array, reproducible across NumPy versions."""

from __future__ import annotations

import math

import numpy as np

from cifar_edge.train.data.errors import DataError


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
