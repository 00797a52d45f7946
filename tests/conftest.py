"""Fixtures shared by every test package: tiny real image files and a tiny real run folder.

Package-specific fixtures live in tests/<package>/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_data import TINY_CLASSES, write_image_folder


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ImageFolder dataset ``DIR/train/<class>/*.png`` with 3 classes x 24 images of 32x32."""
    root = tmp_path_factory.mktemp("tiny_dataset")
    write_image_folder(root / "train", per_class=24)
    return root


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run folder (model.safetensors + run.json) holding a small, randomly initialised AirNet."""
    import torch

    from cifar_edge.runtime.contract import Contract
    from cifar_edge.train.models import build_model
    from cifar_edge.train.run_folder import save_model_files

    torch.manual_seed(0)
    contract = Contract(class_names=TINY_CLASSES)
    kwargs = {"num_classes": len(TINY_CLASSES), "widths": [8, 16, 16]}
    model = build_model("airnet", **kwargs)
    model.init_whitening(torch.randn(16, 3, 32, 32))
    run_dir = tmp_path_factory.mktemp("tiny_run")
    save_model_files(
        run_dir,
        model,
        {
            "architecture": {"name": "airnet", "kwargs": kwargs},
            "contract": contract.to_dict(),
            "metrics": {},
        },
    )
    return run_dir
