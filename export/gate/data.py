"""Real images for the parity gate and the int8 calibration.

Sources, first match wins:

1. ``--data PATH``: a labelled ImageFolder (``PATH/<class>/*``, or ``PATH/train/<class>/*`` with an optional
   ``PATH/val/`` or ``PATH/test/``), decoded with the runtime's own path (``open_image_rgb`` + ``resize_to_contract``).
2. The run's own data: ``run.json``'s ``data.spec`` (the ``load_splits`` arguments the training used) gives the
   validation split for the gate and the training split for calibration.
3. Nothing: the gate runs on random batch-shape probes only, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifar_edge.export.config import ExportUsageError
from cifar_edge.export.run_data import RunDataError, run_images, subset
from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.images import ImageDecodeError
from cifar_edge.runtime.labelled import (
    ArrayImages,
    LabelledDataError,
    list_labelled_files,
    resolve_image_folder,
    stratified_subset,
)
from cifar_edge.runtime.preprocess import file_pixels

# How many real files of the data set join the preprocessing-parity check.
PREPROCESS_SAMPLE_FILES = 4


@dataclass
class ExportData:
    # Labelled images at the contract size; description["source"] says where they came from, for reports.
    verification: ArrayImages | None = None
    calibration: ArrayImages | None = None
    # A few real files of the data set, for the preprocessing-parity check.
    sample_files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def gather_export_data(
    record: dict[str, Any],
    contract: Contract,
    *,
    data_path: Path | None,
    verify_images: int,
    calibration_images: int,
) -> ExportData:
    if data_path is not None:
        return _from_image_folder(Path(data_path), contract, verify_images, calibration_images)
    if not (record.get("data") or {}).get("spec"):
        return ExportData(notes=["run.json has no 'data' record, so no real images"])
    return _from_run_spec(record, contract, verify_images, calibration_images)


def _from_run_spec(record: dict[str, Any], contract: Contract, verify: int, calibrate: int) -> ExportData:
    try:
        images = run_images(record, contract)
    except RunDataError as error:  # any failure to rebuild the data falls back to probes, with the reason
        return ExportData(notes=[f"{error}, so no real images"])
    assert images is not None  # the caller checked that run.json has a data spec
    data = ExportData()
    if len(images.val) and verify > 0:
        data.verification = subset(images.val, verify)
    if len(images.train) and calibrate > 0:
        data.calibration = subset(images.train, calibrate)
    described = images.val.description["data"]
    if described != "cifar10" and Path(described).is_dir():
        try:
            files, labels = _labelled_files(_class_root(Path(described))[0], contract)
        except (ExportUsageError, OSError):
            files, labels = [], np.zeros(0, np.int64)  # the sample files only feed the preprocessing check
        data.sample_files = [files[i] for i in stratified_subset(labels, PREPROCESS_SAMPLE_FILES)]
    return data


def _class_root(root: Path) -> tuple[Path, Path]:
    """(calibration folder, verification folder) of an ImageFolder tree: the gate validates (runtime/labelled.py)."""
    folders = resolve_image_folder(root, "validation")
    if folders.train is not None:
        return folders.train, folders.held_out or folders.train
    return root, root


def _labelled_files(folder: Path, contract: Contract) -> tuple[list[Path], np.ndarray]:
    try:
        return list_labelled_files(folder, contract)
    except LabelledDataError as error:
        raise ExportUsageError(str(error)) from None


def _decode(files: list[Path], contract: Contract) -> tuple[np.ndarray, list[int]]:
    """The runtime's exact decoding path; returns the images and the positions that decoded."""
    height, width = contract.image_size
    images, kept = [], []
    for position, path in enumerate(files):
        try:
            images.append(file_pixels(path, contract))
            kept.append(position)
        except ImageDecodeError:
            continue
    stacked = np.stack(images) if images else np.zeros((0, height, width, 3), dtype=np.uint8)
    return stacked, kept


def _from_image_folder(root: Path, contract: Contract, verify: int, calibrate: int) -> ExportData:
    if not root.is_dir():
        raise ExportUsageError(f"{root}: --data must be an image folder (PATH/<class>/* or PATH/train/<class>/*)")
    calibration_root, verification_root = _class_root(root)
    data = ExportData()
    verification_files, verification_labels = _labelled_files(verification_root, contract)
    if not verification_files:
        raise ExportUsageError(f"{verification_root}: no image files in its class folders")
    if verify > 0:
        chosen = stratified_subset(verification_labels, verify)
        images, kept = _decode([verification_files[i] for i in chosen], contract)
        if len(kept) < len(chosen):
            data.notes.append(f"{len(chosen) - len(kept)} of {len(chosen)} files in {verification_root} did not decode")
        data.verification = _image_set(images, verification_labels[chosen][kept], contract, verification_root)
    if calibrate > 0:
        calibration_files, calibration_labels = verification_files, verification_labels
        if calibration_root != verification_root:
            calibration_files, calibration_labels = _labelled_files(calibration_root, contract)
        chosen = stratified_subset(calibration_labels, calibrate)
        images, kept = _decode([calibration_files[i] for i in chosen], contract)
        data.calibration = _image_set(images, calibration_labels[chosen][kept], contract, calibration_root)
        if calibration_root == verification_root:
            data.notes.append("calibration and verification images come from the same folder (no train/ split)")
    data.sample_files = [verification_files[i] for i in stratified_subset(verification_labels, PREPROCESS_SAMPLE_FILES)]
    return data


def _image_set(images: np.ndarray, labels: np.ndarray, contract: Contract, root: Path) -> ArrayImages:
    return ArrayImages(images, labels, contract.class_names, {"source": str(root), "images": len(labels)})
