"""The run an export, cifar-eval or cifar-bench reads: which folder, loaded how, and its own images.

Which folder: the one given, else the latest run (``runs/latest``, relative to the current folder), read by the
runtime's own ``latest_run_dir`` (a symlink to the run folder or, where symlinks fail, a text file holding its name),
so ``cifar-export`` and ``cifar-infer`` always agree on what "latest" means. Its images: both splits rebuilt from
run.json's data record (used by the parity gate, cifar-eval and cifar-bench).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cifar_edge.export.config import ExportUsageError
from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.common.names import LATEST_LINK, RUNS_DIR
from cifar_edge.runtime.contract import Contract, ContractError
from cifar_edge.runtime.labelled import ArrayImages, stratified_subset
from cifar_edge.runtime.model_file import latest_run_dir

if TYPE_CHECKING:
    from cifar_edge.train.run_folder import LoadedRun


def resolve_run_dir(run_dir: str | Path | None, runs_dir: str | Path = RUNS_DIR) -> Path:
    """``run_dir`` itself when given, else the latest run; ExportUsageError (one line) when there is none."""
    if run_dir is not None:
        path = Path(run_dir)
        if not path.is_dir():
            raise ExportUsageError(f"{path}: run folder not found")
        return path
    latest = latest_run_dir(runs_dir)
    if latest is None:
        where = Path(runs_dir) / LATEST_LINK
        raise ExportUsageError(
            f"no RUN_DIR given and {where} does not point to a run folder (looked under {Path.cwd()}); "
            "pass the run folder written by cifar-train"
        )
    return latest


def load_export_run(run_dir: Path) -> LoadedRun:
    """The run folder's model and record; ExportUsageError (one line naming the file and field) when unusable."""
    from cifar_edge.train.run_folder import RunFolderError, load_run  # torch: cifar-eval of an ONNX file needs none

    try:
        return load_run(run_dir)
    except (RunFolderError, ContractError, ValueError, OSError) as error:
        raise ExportUsageError(first_line(error)) from None


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
