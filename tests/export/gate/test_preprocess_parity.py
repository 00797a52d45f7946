"""Runtime preprocessing (Pillow + numpy) equals torchvision's Resize > ToTensor > Normalize within 1e-6."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from export_helpers import SHARED_CAT_PHOTO
from PIL import Image

from cifar_edge.export.gate.preprocess import check_preprocessing, runtime_tensor, torchvision_tensor
from cifar_edge.runtime.contract import Contract

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def photo() -> Path:
    if not SHARED_CAT_PHOTO.is_file():
        pytest.skip(f"shared photo missing: {SHARED_CAT_PHOTO}")
    return SHARED_CAT_PHOTO


def test_cat_photo_matches_torchvision(photo: Path) -> None:
    with Image.open(photo) as image:
        assert image.size == (451, 300)  # not the contract size: the resize path is exercised
    contract = Contract()
    difference = np.abs(runtime_tensor(photo, contract) - torchvision_tensor(photo, contract))
    assert difference.max() <= TOLERANCE


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "LA", "1"])
def test_non_rgb_modes_match_torchvision(photo: Path, tmp_path: Path, mode: str) -> None:
    with Image.open(photo) as image:
        rgb = image.convert("RGB")
    converted = rgb.convert(mode)
    if mode == "RGBA":  # real transparency, so the composite-on-background rule is exercised
        converted.putalpha(Image.linear_gradient("L").resize(rgb.size))
    path = tmp_path / f"cat_{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
    converted.save(path)
    with Image.open(path) as reopened:
        assert reopened.mode == mode
    for contract in (Contract(), Contract(resize_method="bicubic", image_size=(40, 48))):
        difference = np.abs(runtime_tensor(path, contract) - torchvision_tensor(path, contract))
        assert difference.max() <= TOLERANCE, (mode, contract.resize_method)


def test_gate_check_covers_generated_modes_and_given_files(photo: Path) -> None:
    report = check_preprocessing(Contract(), [photo], threshold=TOLERANCE)
    assert report.passed and report.max_abs_diff <= TOLERANCE
    modes = {item.mode for item in report.files}
    assert {"RGB", "L", "P", "RGBA", "LA", "CMYK", "1"} <= modes
    assert report.files[0].file == str(photo)


def test_comparison_is_sensitive_to_a_real_difference(photo: Path) -> None:
    # The same file through two different resize filters must differ by far more than the tolerance.
    bilinear = runtime_tensor(photo, Contract(resize_method="bilinear"))
    bicubic = torchvision_tensor(photo, Contract(resize_method="bicubic"))
    assert np.abs(bilinear - bicubic).max() > 1e-2
