"""The run's own images, rebuilt from run.json's data record: used by the parity gate, cifar-eval and cifar-bench."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.evaluate.labelled_folder import ArrayImages, stratified_subset


class RunDataError(ValueError):
    """The run's images cannot be rebuilt; ``str()`` is one line saying why."""


@dataclass(frozen=True)
class RunImages:
    spec: dict[str, Any]  # the load_splits arguments the training used (run.json's data.spec)
    train: ArrayImages  # labels index the model's classes
    val: ArrayImages


def run_images(record: dict[str, Any], contract: Contract) -> RunImages | None:
    """Both splits of the run's data, relabelled to the contract's class order; None when run.json has no spec."""
    spec = (record.get("data") or {}).get("spec")
    if not spec:
        return None
    from cifar_edge.train.data.load import load_splits  # imported late: only runs that record their data need it

    try:
        splits = load_splits(**{**spec, "show_progress": False})
    except Exception as error:  # the data moved, the cache is gone and the download fails, ...
        raise RunDataError(f"cannot rebuild the run's images ({first_line(error)})") from None
    unknown = [name for name in splits.class_names if name not in contract.class_names]
    if unknown:
        raise RunDataError(f"the run's data has classes {unknown} that its model does not know")
    to_model = np.asarray([contract.class_names.index(name) for name in splits.class_names], dtype=np.int64)
    described = str(spec.get("data", "cifar10"))

    def split(images: np.ndarray, labels: np.ndarray, name: str, prefix: str) -> ArrayImages:
        description = {"source": f"{described} {name} split", "data": described, "spec": spec, "images": len(labels)}
        return ArrayImages(images, to_model[labels], contract.class_names, description, source_name=prefix)

    return RunImages(
        spec,
        train=split(splits.train_images, splits.train_labels, "training", "train"),
        val=split(splits.val_images, splits.val_labels, "validation", "val"),
    )


def subset(images: ArrayImages, limit: int | None) -> ArrayImages:
    """A class-stratified subset of ``limit`` images (all of them when limit is None or at least their count)."""
    if limit is None or limit >= len(images):
        return images
    keep = stratified_subset(images.labels, limit)
    chosen = ArrayImages(images.images[keep], images.labels[keep], images.class_names, {**images.description})
    chosen.description["images"] = len(keep)
    chosen.sources = [images.sources[index] for index in keep]  # each image keeps its name in the full set
    return chosen
