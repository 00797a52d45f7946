"""``load_splits``'s arguments: their checks, and the spec that records them so a re-load gets the same splits."""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

from cifar_edge.runtime.contract import RESIZE_METHODS
from cifar_edge.train.data.errors import DataError


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
