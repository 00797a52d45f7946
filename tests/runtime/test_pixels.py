"""Files and bytes to the contract's pixels: plain JPEGs through libjpeg-turbo's fast path, the rest through Pillow,
to the same pixels either way."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from runtime_helpers import SHARED_CIFAR_TRAIN

from cifar_edge.runtime import preprocess as preprocess_module
from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.images import ImageDecodeError, decode_image_bytes, open_image_rgb
from cifar_edge.runtime.preprocess import bytes_pixels, decode_plain_jpeg, file_pixels, resize_to_contract

CONTRACT = Contract()


def _noise(height: int, width: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _jpeg(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **params)
    return buffer.getvalue()


def _pillow_pixels(data: bytes) -> np.ndarray:
    return resize_to_contract(decode_image_bytes(data, "<test>"), CONTRACT)


PLAIN_JPEGS = {
    "4:2:0, contract size": (_noise(32, 32), {"quality": 90}),
    "4:2:2, resized": (_noise(45, 67, 1), {"subsampling": 1}),
    "4:4:4, low quality": (_noise(40, 24, 2), {"subsampling": 0, "quality": 20}),
    "progressive": (_noise(32, 32, 3), {"progressive": True}),
    "optimised Huffman tables": (_noise(50, 50, 4), {"optimize": True}),
    "greyscale": (_noise(32, 48, 5).convert("L"), {}),
    "with an ICC profile": (_noise(32, 32, 6), {"icc_profile": b"\x00" * 128}),
}


@pytest.mark.parametrize("name", sorted(PLAIN_JPEGS))
def test_plain_jpegs_take_the_fast_path_to_pillows_pixels(name: str, tmp_path: Path) -> None:
    image, params = PLAIN_JPEGS[name]
    data = _jpeg(image, **params)
    assert decode_plain_jpeg(data, "<test>", None) is not None
    expected = _pillow_pixels(data)
    assert np.array_equal(bytes_pixels(data, "<test>", CONTRACT), expected)
    path = tmp_path / "plain.jpg"
    path.write_bytes(data)
    assert np.array_equal(file_pixels(path, CONTRACT), expected)


@pytest.mark.skipif(not SHARED_CIFAR_TRAIN.is_dir(), reason="needs the shared CIFAR-10 JPEG copy")
def test_real_cifar_jpegs_decode_to_pillows_pixels() -> None:
    files = sorted(SHARED_CIFAR_TRAIN.glob("*/*.jpg"))[::997][:50]
    assert files
    for path in files:
        assert np.array_equal(file_pixels(path, CONTRACT), resize_to_contract(open_image_rgb(path), CONTRACT))


def test_exif_cmyk_and_other_formats_go_to_pillow(tmp_path: Path) -> None:
    stored = np.zeros((32, 32, 3), dtype=np.uint8)
    stored[:, :16] = (255, 0, 0)  # left half red: after a 90-degree turn the top half is red
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = tmp_path / "rotated.jpg"
    rotated.write_bytes(_jpeg(Image.fromarray(stored), exif=exif, quality=95))
    cmyk = _jpeg(_noise(32, 32).convert("CMYK"))
    png = io.BytesIO()
    _noise(32, 32).save(png, "PNG")
    for data in (rotated.read_bytes(), cmyk, png.getvalue()):
        assert decode_plain_jpeg(data, "<test>", None) is None
        assert np.array_equal(bytes_pixels(data, "<test>", CONTRACT), _pillow_pixels(data))
    top, bottom = file_pixels(rotated, CONTRACT)[4, 16], file_pixels(rotated, CONTRACT)[28, 16]
    assert top[0] > 200 and bottom[0] < 60  # the orientation was applied


def test_truncated_jpeg_is_a_one_line_error(tmp_path: Path) -> None:
    data = _jpeg(_noise(64, 64))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    assert decode_plain_jpeg(cut.read_bytes(), str(cut), None) is None  # libjpeg-turbo's warning hands it on
    with pytest.raises(ImageDecodeError, match=r"cut\.jpg: truncated"):
        file_pixels(cut, CONTRACT)


def test_pixel_limits_hold_on_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "square.jpg"
    path.write_bytes(_jpeg(_noise(40, 40)))  # 1,600 pixels
    assert file_pixels(path, CONTRACT, max_pixels=1600).shape == (32, 32, 3)
    with pytest.raises(ImageDecodeError, match="1,600 pixels exceeds the decompression-bomb limit of 1,599"):
        file_pixels(path, CONTRACT, max_pixels=1599)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's limit caps ours
    with pytest.raises(ImageDecodeError, match="limit of 1,000 pixels"):
        file_pixels(path, CONTRACT, max_pixels=5000)


def test_truncated_images_stay_refused_on_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fine.jpg"
    path.write_bytes(_jpeg(_noise(32, 32)))
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageDecodeError, match="LOAD_TRUNCATED_IMAGES"):
        file_pixels(path, CONTRACT)


def test_same_pixels_without_simplejpeg_and_for_large_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "plain.jpg"
    path.write_bytes(_jpeg(_noise(45, 67)))
    expected = file_pixels(path, CONTRACT)
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "simplejpeg", None)  # an install without the wheel: import fails
        assert decode_plain_jpeg(path.read_bytes(), str(path), None) is None
        assert np.array_equal(file_pixels(path, CONTRACT), expected)
    monkeypatch.setattr(preprocess_module, "WHOLE_FILE_MAX_BYTES", 16)  # streamed through Pillow, never read whole
    assert np.array_equal(file_pixels(path, CONTRACT), expected)


@pytest.mark.parametrize(("content", "reason"), [(None, "file not found"), (b"", "empty file")])
def test_file_errors_name_the_file(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "input.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=rf"input\.jpg: {reason}"):
        file_pixels(path, CONTRACT)
    with pytest.raises(ImageDecodeError, match="is a directory"):
        file_pixels(tmp_path, CONTRACT)
