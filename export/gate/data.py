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

from cifar_edge.export.errors import ExportUsageError
from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.errors import first_line
from cifar_edge.runtime.evaluate.labelled_folder import LabelledDataError, list_labelled_files
from cifar_edge.runtime.images import ImageDecodeError, open_image_rgb
from cifar_edge.runtime.preprocess import resize_to_contract

_HELD_OUT_FOLDERS = ("val", "test")
# How many real files of the data set join the preprocessing-parity check.
PREPROCESS_SAMPLE_FILES = 4


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # uint8 (N, H, W, 3) at the contract size
    labels: np.ndarray | None  # int64 (N,) indices into contract.class_names, None when unlabelled
    source: str  # where the images came from, for reports

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class ExportData:
    verification: ImageSet | None = None
    calibration: ImageSet | None = None
    # A few real files of the data set, for the preprocessing-parity check.
    sample_files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def seeded_sample(count: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of ``min(limit, count)`` items drawn without replacement (all of them when limit >= count)."""
    if limit >= count:
        return np.arange(count)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(count, size=max(limit, 0), replace=False))


def gather_export_data(
    record: dict[str, Any],
    contract: Contract,
    *,
    data_path: Path | None,
    verify_images: int,
    calibration_images: int,
    seed: int,
) -> ExportData:
    if data_path is not None:
        return _from_image_folder(Path(data_path), contract, verify_images, calibration_images, seed)
    spec = (record.get("data") or {}).get("spec")
    if not spec:
        return ExportData(notes=["run.json has no 'data' record, so no real images"])
    return _from_run_spec(spec, contract, verify_images, calibration_images, seed)


def _from_run_spec(spec: dict[str, Any], contract: Contract, verify: int, calibrate: int, seed: int) -> ExportData:
    from cifar_edge.train.data.load import load_splits  # imported late: only runs that record their data need it

    try:
        splits = load_splits(**{**spec, "show_progress": False})
    except Exception as error:  # any failure to rebuild the data falls back to probes, with the reason
        note = f"cannot load the run's data, so no real images: {first_line(error)}"
        return ExportData(notes=[note])
    if set(splits.class_names) != set(contract.class_names):
        return ExportData(
            notes=[f"the run's data has classes {list(splits.class_names)}, the contract {list(contract.class_names)}"]
        )
    # Same classes, possibly another order: relabel by name so labels index the contract's class list.
    to_contract = np.asarray([contract.class_names.index(name) for name in splits.class_names], dtype=np.int64)
    described = spec.get("data", "cifar10")
    data = ExportData()
    if len(splits.val_images) and verify > 0:
        index = seeded_sample(len(splits.val_images), verify, seed)
        data.verification = ImageSet(
            splits.val_images[index], to_contract[splits.val_labels[index]], f"{described} validation split"
        )
    if len(splits.train_images) and calibrate > 0:
        index = seeded_sample(len(splits.train_images), calibrate, seed + 1)
        data.calibration = ImageSet(splits.train_images[index], None, f"{described} training split")
    if described != "cifar10" and Path(str(described)).is_dir():
        try:
            files = _labelled_files(_class_root(Path(str(described)))[0], contract)[0]
        except (ExportUsageError, OSError):
            files = []  # the sample files only feed the preprocessing check; the splits above already loaded
        data.sample_files = [files[i] for i in seeded_sample(len(files), PREPROCESS_SAMPLE_FILES, seed)]
    return data


def _class_root(root: Path) -> tuple[Path, Path]:
    """(calibration folder, verification folder) of an ImageFolder tree."""
    train = root / "train"
    if train.is_dir():
        held_out = next((root / name for name in _HELD_OUT_FOLDERS if (root / name).is_dir()), train)
        return train, held_out
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
            images.append(resize_to_contract(open_image_rgb(path, contract.alpha_background), contract))
            kept.append(position)
        except ImageDecodeError:
            continue
    stacked = np.stack(images) if images else np.zeros((0, height, width, 3), dtype=np.uint8)
    return stacked, kept


def _from_image_folder(root: Path, contract: Contract, verify: int, calibrate: int, seed: int) -> ExportData:
    if not root.is_dir():
        raise ExportUsageError(f"{root}: --data must be an image folder (PATH/<class>/* or PATH/train/<class>/*)")
    calibration_root, verification_root = _class_root(root)
    data = ExportData()
    verification_files, verification_labels = _labelled_files(verification_root, contract)
    if not verification_files:
        raise ExportUsageError(f"{verification_root}: no image files in its class folders")
    if verify > 0:
        chosen = seeded_sample(len(verification_files), verify, seed)
        images, kept = _decode([verification_files[i] for i in chosen], contract)
        if len(kept) < len(chosen):
            data.notes.append(f"{len(chosen) - len(kept)} of {len(chosen)} files in {verification_root} did not decode")
        data.verification = ImageSet(images, verification_labels[chosen][kept], str(verification_root))
    if calibrate > 0:
        calibration_files = verification_files
        if calibration_root != verification_root:
            calibration_files = _labelled_files(calibration_root, contract)[0]
        chosen = seeded_sample(len(calibration_files), calibrate, seed + 1)
        images, _ = _decode([calibration_files[i] for i in chosen], contract)
        data.calibration = ImageSet(images, None, str(calibration_root))
        if calibration_root == verification_root:
            data.notes.append("calibration and verification images come from the same folder (no train/ split)")
    data.sample_files = [
        verification_files[i] for i in seeded_sample(len(verification_files), PREPROCESS_SAMPLE_FILES, seed)
    ]
    return data
