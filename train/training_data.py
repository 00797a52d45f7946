"""The session's data: the splits, the ``load_splits`` arguments that reproduce them, and their checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cifar_edge.runtime.contract import Contract
from cifar_edge.train.config import TrainConfig

if TYPE_CHECKING:
    # The data module imports torchvision (slow to import): loaded only when fit() has to load data itself.
    from cifar_edge.train.data.load import Splits


def obtain_splits(
    config: TrainConfig, splits: Splits | None, saved: dict[str, Any] | None, contract: Contract
) -> tuple[Splits, dict[str, Any] | None]:
    """The splits and the exact ``load_splits`` keyword arguments that reproduce them (None when unknown).

    The data module records its canonical arguments (paths made absolute) as ``description["spec"]``; those are
    preferred. Caller-provided splits without that record get None: fit did not load them and cannot know how.
    """
    if splits is not None:
        return splits, plain_json(splits.description.get("spec"))
    if saved is not None:
        spec = saved["data"]["spec"]
        if spec is None:
            raise ValueError("this run's data was passed to fit() directly; resume it with fit(config, splits)")
    else:
        spec = {
            "data": config.data if config.data == "cifar10" else str(Path(config.data).expanduser().resolve()),
            "data_root": None if config.data_root is None else str(Path(config.data_root).expanduser().resolve()),
            "val_fraction": config.val_fraction,
            "seed": config.seed,
            "image_size": list(contract.image_size),
            "resize_method": contract.resize_method,
        }
        if config.cache_dir is not None:
            spec["cache_dir"] = str(Path(config.cache_dir).expanduser().resolve())
        if config.limit_per_class is not None:
            spec["limit_per_class"] = config.limit_per_class
    arguments = {**spec, "image_size": tuple(spec["image_size"])}
    from cifar_edge.train.data.load import load_splits

    splits = load_splits(**arguments, show_progress=not config.quiet)
    return splits, plain_json(splits.description.get("spec") or spec)


def check_splits(splits: Splits, contract: Contract) -> None:
    height, width = contract.image_size
    for name, images, labels in (
        ("train", splits.train_images, splits.train_labels),
        ("val", splits.val_images, splits.val_labels),
    ):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (height, width, 3):
            raise ValueError(
                f"{name} images must be uint8 (N, {height}, {width}, 3), got {images.dtype} {images.shape}"
            )
        if len(labels) != len(images):
            raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(splits.class_names)):
            raise ValueError(f"{name} labels must be in [0, {len(splits.class_names)})")
    if len(splits.train_labels) == 0:
        raise ValueError("no training images")
    if len(splits.class_names) < 2:
        raise ValueError(f"need at least 2 classes, got {len(splits.class_names)}")


def plain_json(value: Any) -> Any:
    """Round-trip through JSON so records hold only plain types (numpy scalars and paths become numbers/strings)."""

    def convert(item: Any) -> Any:
        if isinstance(item, np.generic):
            return item.item()
        if isinstance(item, np.ndarray):
            return item.tolist()
        return str(item)

    return json.loads(json.dumps(value, default=convert))
