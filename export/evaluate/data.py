"""Which labelled images ``cifar-eval`` and ``cifar-bench`` measure on.

- ``cifar10``: CIFAR-10's official 10,000-image test split through torchvision (``train.data.load_cifar10_test``;
  needs the ``[train]`` extra; downloaded into ``--data-root`` when missing). Its classes are matched to the
  model's by name.
- a folder: ``runtime.labelled`` (``PATH/test/<class>/*``, ``PATH/val/<class>/*`` or ``PATH/<class>/*``),
  decoded by the runtime itself, no torch.
- for ``cifar-bench`` only, by default: the run's own validation images, rebuilt with
  ``load_splits(**run.json["data"]["spec"])``, exactly the images the training validated on.

Every problem is a one-line :class:`LabelledDataError` (exit code 2).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cifar_edge.export.run_data import RunDataError, run_images, subset
from cifar_edge.runtime.common.command import missing_module, needs_extra
from cifar_edge.runtime.contract import CIFAR10_CLASS_NAMES, Contract
from cifar_edge.runtime.labelled import (
    ArrayImages,
    LabelledDataError,
    LabelledImages,
    load_labelled_folder,
    stratified_subset,
)
from cifar_edge.runtime.predictions import Failure

CIFAR10 = "cifar10"


def load_eval_data(
    data: str,
    contract: Contract,
    *,
    data_root: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    decode_workers: int | None = None,
    max_pixels: int | None = None,
) -> LabelledImages:
    """``data`` is "cifar10" or an image folder; ``limit`` keeps a class-stratified subset of that many images."""
    if str(data) == CIFAR10:
        return _cifar10_test(contract, data_root, limit)
    return load_labelled_folder(Path(data), contract, decode_workers=decode_workers, max_pixels=max_pixels, limit=limit)


def _cifar10_test(contract: Contract, data_root: str | os.PathLike[str] | None, limit: int | None) -> ArrayImages:
    missing = [name for name in CIFAR10_CLASS_NAMES if name not in contract.class_names]
    if missing:
        raise LabelledDataError(
            f"--data cifar10: the model does not know CIFAR-10's classes {', '.join(missing)} "
            f"(it knows: {', '.join(contract.class_names)}); pass --data PATH with your own labelled images"
        )
    try:
        from cifar_edge.train.data.load import DataError, load_cifar10_test
    except ModuleNotFoundError as error:
        message = needs_extra("train", missing_module(error) or "torchvision", "--data cifar10")
        raise LabelledDataError(f"{message}; or pass --data PATH (an image folder, read without torch)") from None
    try:
        images, labels = load_cifar10_test(
            data_root, image_size=contract.image_size, resize_method=contract.resize_method
        )
    except DataError as error:
        raise LabelledDataError(str(error).strip().splitlines()[0]) from None
    to_model = np.asarray([contract.class_names.index(name) for name in CIFAR10_CLASS_NAMES], dtype=np.int64)
    labels = to_model[np.asarray(labels, dtype=np.int64)]
    if limit is not None and limit < len(labels):
        keep = stratified_subset(labels, limit)
        images, labels = images[keep], labels[keep]
    description = {
        "source": "cifar10",
        "split": "test (official, 10,000 images)",
        "root": str(data_root) if data_root is not None else None,
        "images": len(labels),
    }
    return ArrayImages(images, labels, contract.class_names, description, source_name="cifar10-test")


def run_validation_data(record: dict[str, Any], contract: Contract, limit: int | None = None) -> ArrayImages | None:
    """The run's validation split (export/run_data.py); None when the run has no data record."""
    try:
        images = run_images(record, contract)
    except RunDataError as error:
        raise LabelledDataError(f"{error}; pass --data PATH") from None
    if images is None:
        return None
    if not len(images.val):
        raise LabelledDataError("the run has no validation images (val_fraction 0); pass --data PATH")
    chosen = subset(images.val, limit)
    chosen.description = {
        "source": "run validation split",
        "data": chosen.description["data"],
        "spec": images.spec,
        "images": len(chosen),
    }
    return chosen


def materialize(data: LabelledImages, batch_size: int = 256) -> tuple[ArrayImages, list[Failure]]:
    """Decode every image once into memory (for repeated timing runs); undecodable files are left out."""
    if isinstance(data, ArrayImages):
        return data, []
    images, labels, failures = [], [], []
    for batch in data.batches(batch_size):
        failures.extend(failure for _, failure in batch.failures)
        if len(batch.indices):
            images.append(batch.images)
            labels.append(data.labels[batch.indices])
    if not images:
        raise LabelledDataError(f"{data.description.get('root', 'data')}: none of its {len(data)} images decoded")
    description = {**data.description, "images": int(sum(len(part) for part in labels)), "skipped": len(failures)}
    arrays = ArrayImages(np.concatenate(images), np.concatenate(labels), data.class_names, description)
    return arrays, failures
