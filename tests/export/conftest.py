"""Export-test fixtures: a small AirNet trained for a few dozen steps on tiny labelled images.

Training makes the accuracies in the parity reports mean something (a random model sits at chance and its
near-tied logits would make top-1 agreement a coin toss), while staying well under a few seconds on 2 cores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from export_helpers import TINY_CLASSES, copy_run, write_image_folder

TRAIN_STEPS = 15


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on 2 shared cores torch's 2 threads thrash (measured 15x slower per training step under
    load), and these models are far too small to gain from a second thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def single_torch_thread() -> Iterator[None]:
    """For the export test modules (they opt in with ``pytestmark``), so other packages' tests keep their setting."""
    with one_torch_thread():
        yield


def _load_folder(root: Path, contract) -> tuple[np.ndarray, np.ndarray]:
    from cifar_edge.runtime.images import open_image_rgb
    from cifar_edge.runtime.preprocess import resize_to_contract

    images, labels = [], []
    for label, name in enumerate(contract.class_names):
        for path in sorted((root / name).glob("*.png")):
            images.append(resize_to_contract(open_image_rgb(path), contract))
            labels.append(label)
    return np.stack(images), np.asarray(labels)


@pytest.fixture(scope="session")
def labelled_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``DIR/train/<class>/*.png`` (3 x 40) and ``DIR/val/<class>/*.png`` (3 x 20), 32x32."""
    root = tmp_path_factory.mktemp("export_data")
    write_image_folder(root / "train", per_class=40, seed=1)
    write_image_folder(root / "val", per_class=20, seed=2)
    return root


@pytest.fixture(scope="session")
def trained_run_dir(tmp_path_factory: pytest.TempPathFactory, labelled_data_dir: Path) -> Path:
    """A real run folder: AirNet (widths 8/16/16) trained for TRAIN_STEPS steps on ``labelled_data_dir``."""
    with one_torch_thread():
        return _train_run(tmp_path_factory, labelled_data_dir)


def _train_run(tmp_path_factory: pytest.TempPathFactory, labelled_data_dir: Path) -> Path:
    from cifar_edge.runtime.contract import Contract
    from cifar_edge.runtime.preprocess import normalize_batch
    from cifar_edge.train.models import build_model
    from cifar_edge.train.run_folder import save_model_files

    torch.manual_seed(0)
    contract = Contract(class_names=TINY_CLASSES)
    images, labels = _load_folder(labelled_data_dir / "train", contract)
    inputs = torch.from_numpy(normalize_batch(images, contract))
    targets = torch.from_numpy(labels)
    kwargs = {"num_classes": len(TINY_CLASSES), "widths": [8, 16, 16]}
    model = build_model("airnet", **kwargs)
    model.init_whitening(inputs[:64])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(TRAIN_STEPS):
        batch = torch.randint(0, len(inputs), (24,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(inputs[batch]), targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    val_images, val_labels = _load_folder(labelled_data_dir / "val", contract)
    with torch.no_grad():
        logits = model(torch.from_numpy(normalize_batch(val_images, contract)))
    accuracy = float((logits.argmax(1).numpy() == val_labels).mean())
    run_dir = tmp_path_factory.mktemp("trained_run")
    save_model_files(
        run_dir,
        model,
        {
            "architecture": {"name": "airnet", "kwargs": kwargs},
            "contract": contract.to_dict(),
            "metrics": {"val_accuracy": accuracy, "steps": TRAIN_STEPS},
            "data": {"spec": {"data": str(labelled_data_dir), "val_fraction": 0.1, "seed": 0}},
        },
    )
    return run_dir


@pytest.fixture(scope="session")
def exported_all(trained_run_dir: Path, labelled_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """``export_run`` of every format (fp32) on a private copy of the trained run, gated on the labelled images."""
    from cifar_edge.export import ExportConfig, export_run

    run_dir = copy_run(trained_run_dir, tmp_path_factory.mktemp("exported_all"))
    config = ExportConfig(formats=("onnx", "torchscript", "exportedprogram"), data=labelled_data_dir)
    with one_torch_thread():
        return export_run(run_dir, config)
