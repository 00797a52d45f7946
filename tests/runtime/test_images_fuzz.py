"""Fuzzing the decoder with damaged real files: every outcome is an RGB image or a clean ImageDecodeError."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from runtime_helpers import SHARED_CAT_PHOTO, SHARED_CIFAR_TRAIN

from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.images import ImageDecodeError, decode_image_bytes
from cifar_edge.runtime.preprocess import bytes_pixels, decode_plain_jpeg

# Keep each fuzz case cheap: a mutated header can claim a huge size; refuse beyond 1 megapixel.
FUZZ_PIXEL_LIMIT = 1_000_000


def _seed_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    files = {}
    for name, params in {
        "PNG": {},
        "JPEG": {"quality": 90},
        "GIF": {},
        "WEBP": {"quality": 80},
        "TIFF": {},
        "BMP": {},
    }.items():
        buffer = io.BytesIO()
        image.save(buffer, name, **params)
        files[name] = buffer.getvalue()
    for name, source, params in [  # more inputs for the JPEG fast path (runtime/preprocess.py)
        ("JPEG progressive 4:4:4", image, {"progressive": True, "subsampling": 0}),
        ("JPEG grey", image.convert("L"), {"quality": 75}),
    ]:
        buffer = io.BytesIO()
        source.save(buffer, "JPEG", **params)
        files[name] = buffer.getvalue()
    jpegs = sorted(SHARED_CIFAR_TRAIN.glob("cat/*.jpg"))[:1] if SHARED_CIFAR_TRAIN.is_dir() else []
    if jpegs:
        files["cifar JPEG"] = jpegs[0].read_bytes()
    if SHARED_CAT_PHOTO.is_file():
        files["cat PNG head"] = SHARED_CAT_PHOTO.read_bytes()[:60_000]  # already truncated: must fail cleanly
    return files


SEEDS = _seed_files()


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buffer = bytearray(data)
    kind = rng.integers(0, 4)
    if kind == 0:  # flip a few bytes, biased to the header where parsers branch
        for _ in range(int(rng.integers(1, 6))):
            limit = len(buffer) if rng.random() < 0.5 else min(len(buffer), 64)
            buffer[int(rng.integers(0, limit))] = int(rng.integers(0, 256))
    elif kind == 1:  # truncate
        buffer = buffer[: int(rng.integers(0, len(buffer)))]
    elif kind == 2:  # insert junk
        at = int(rng.integers(0, len(buffer)))
        buffer[at:at] = rng.integers(0, 256, int(rng.integers(1, 32)), dtype=np.uint8).tobytes()
    else:  # overwrite a run with extreme values (sizes, lengths)
        at = int(rng.integers(0, max(1, min(len(buffer), 200))))
        buffer[at : at + 4] = bytes([0xFF, 0xFF, 0x7F, 0xFF])
    return bytes(buffer)


def _decode_cleanly(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about odd metadata; only exceptions matter here
        try:
            image = decode_image_bytes(data, "fuzz", max_pixels=FUZZ_PIXEL_LIMIT)
        except ImageDecodeError as error:
            assert str(error).startswith("fuzz: ") and "\n" not in str(error)
            image = None
        try:
            fast = decode_plain_jpeg(data, "fuzz", FUZZ_PIXEL_LIMIT)
        except ImageDecodeError as error:
            assert image is None and "decompression-bomb limit" in str(error)
            fast = None
        try:
            pixels = bytes_pixels(data, "fuzz", Contract(), max_pixels=FUZZ_PIXEL_LIMIT)
        except ImageDecodeError as error:
            assert str(error).startswith("fuzz: ") and "\n" not in str(error)
            pixels = None
    # The fast path accepts nothing Pillow refuses, and decodes what it accepts to Pillow's pixels.
    if fast is not None:
        assert image is not None and np.array_equal(fast, np.asarray(image))
    assert (pixels is None) == (image is None)
    if image is not None:
        assert image.mode == "RGB" and image.width * image.height <= FUZZ_PIXEL_LIMIT
        assert pixels is not None and pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8


@pytest.mark.parametrize("format_name", sorted(SEEDS))
def test_seeded_mutations_fail_cleanly(format_name: str) -> None:
    rng = np.random.default_rng(sum(format_name.encode()))  # deterministic per format
    original = SEEDS[format_name]
    for _ in range(120):
        _decode_cleanly(_mutate(original, rng))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    format_name=st.sampled_from(sorted(SEEDS)),
    position=st.floats(0, 1),
    patch=st.binary(min_size=1, max_size=16),
    cut=st.floats(0.05, 1),
)
def test_hypothesis_patches_fail_cleanly(format_name: str, position: float, patch: bytes, cut: float) -> None:
    original = SEEDS[format_name]
    at = int(position * (len(original) - 1))
    mutated = original[:at] + patch + original[at + len(patch) :]
    _decode_cleanly(mutated[: max(1, int(len(mutated) * cut))])
