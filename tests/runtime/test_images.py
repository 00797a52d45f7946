"""Images from the wild: every Pillow mode to RGB, EXIF orientation, animation, and each class of bad file."""

from __future__ import annotations

import io
import os
import struct
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from runtime_helpers import SHARED_CAT_PHOTO

from cifar_edge.runtime.images import (
    ImageDecodeError,
    decode_image_bytes,
    effective_pixel_limit,
    open_image_rgb,
    to_rgb,
)

BLACK = (0, 0, 0)
WHITE = (255, 255, 255)


def saved(image: Image.Image, path: Path, **params: object) -> Path:
    image.save(path, **params)
    return path


def pixel(image: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, ...]:
    assert image.mode == "RGB"
    return tuple(np.asarray(image)[xy[1], xy[0]].tolist())


# -- modes ------------------------------------------------------------------------------------------------------


def test_rgba_is_composited_on_the_given_background(tmp_path: Path) -> None:
    path = saved(Image.new("RGBA", (4, 4), (0, 0, 255, 128)), tmp_path / "half_blue.png")
    on_black = pixel(open_image_rgb(path, BLACK))
    on_white = pixel(open_image_rgb(path, WHITE))
    assert on_black == (0, 0, 128)
    assert on_white == (127, 127, 255)


def test_palette_with_transparent_index_shows_the_background(tmp_path: Path) -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))  # index 0 red, index 1 green
    image.putpixel((1, 1), 1)
    path = saved(image, tmp_path / "palette.png", transparency=0)
    decoded = open_image_rgb(path, (10, 20, 30))
    assert pixel(decoded, (0, 0)) == (10, 20, 30)  # red index is transparent -> background
    assert pixel(decoded, (1, 1)) == (0, 255, 0)
    gif = saved(image, tmp_path / "palette.gif", transparency=0)
    assert pixel(open_image_rgb(gif, (10, 20, 30)), (0, 0)) == (10, 20, 30)


def test_rgb_with_a_transparent_colour_key(tmp_path: Path) -> None:
    image = Image.new("RGB", (4, 4), (1, 2, 3))
    image.putpixel((2, 2), (200, 100, 50))
    path = saved(image, tmp_path / "keyed.png", transparency=(1, 2, 3))
    decoded = open_image_rgb(path, BLACK)
    assert pixel(decoded, (0, 0)) == BLACK
    assert pixel(decoded, (2, 2)) == (200, 100, 50)


def test_grey_alpha(tmp_path: Path) -> None:
    image = Image.new("LA", (4, 4), (200, 0))
    image.putpixel((1, 1), (90, 255))
    for decoded in (to_rgb(image, (5, 6, 7)), open_image_rgb(saved(image, tmp_path / "la.png"), (5, 6, 7))):
        assert pixel(decoded, (0, 0)) == (5, 6, 7)
        assert pixel(decoded, (1, 1)) == (90, 90, 90)


def test_palette_alpha() -> None:
    image = Image.new("PA", (4, 4), (0, 0))  # palette index 0, fully transparent
    image.putpalette([200, 100, 0] * 256)
    image.putpixel((1, 1), (0, 255))
    decoded = to_rgb(image, (5, 6, 7))
    assert pixel(decoded, (0, 0)) == (5, 6, 7)
    assert pixel(decoded, (1, 1)) == (200, 100, 0)


@pytest.mark.parametrize("mode", ["La", "RGBa"])
def test_premultiplied_alpha_modes(mode: str) -> None:
    image = Image.new(mode, (2, 2), (100, 128) if mode == "La" else (100, 50, 20, 128))
    decoded = to_rgb(image, BLACK)
    # premultiplied 100 at alpha 128 is ~199 unpremultiplied; composited on black at 50% -> ~100 again
    assert abs(pixel(decoded)[0] - 100) <= 1


def test_sixteen_bit_greyscale_is_rescaled_not_clipped(tmp_path: Path) -> None:
    samples = np.array([[0, 257, 1000, 32896, 65535]], dtype=np.uint16)
    path = saved(Image.fromarray(samples), tmp_path / "grey16.png")
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")  # Pillow keeps the 16 bits
    decoded = np.asarray(open_image_rgb(path))[0, :, 0]
    assert decoded.tolist() == [0, 1, 4, 128, 255]  # Pillow's own convert would clip 1000 and 32896 to 255
    tiff = saved(Image.fromarray(samples), tmp_path / "grey16.tif")
    assert np.asarray(open_image_rgb(tiff))[0, :, 0].tolist() == [0, 1, 4, 128, 255]


def test_thirty_two_bit_and_float_greyscale() -> None:
    sixteen_bit_range = Image.fromarray(np.array([[0, 65535]], dtype=np.int32), "I")
    assert np.asarray(to_rgb(sixteen_bit_range))[0, :, 0].tolist() == [0, 255]
    wide = Image.fromarray(np.array([[-100, 0, 99900]], dtype=np.int32), "I")
    assert np.asarray(to_rgb(wide))[0, :, 0].tolist() == [0, 0, 255]
    unit_float = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    assert np.asarray(to_rgb(unit_float))[0, :, 0].tolist() == [0, 128, 255]
    byte_float = Image.fromarray(np.array([[0.0, 17.0, 255.0, np.nan]], dtype=np.float32), "F")
    assert np.asarray(to_rgb(byte_float))[0, :, 0].tolist() == [0, 17, 255, 0]


def test_cmyk_one_bit_and_other_modes(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (4, 4), (255, 0, 0, 0))  # pure cyan
    assert pixel(open_image_rgb(saved(cmyk, tmp_path / "cyan.tif"))) == (0, 255, 255)
    assert pixel(open_image_rgb(saved(cmyk, tmp_path / "cyan.jpg", quality=95))) == pytest.approx((0, 255, 255), abs=3)
    one_bit = Image.new("1", (4, 4), 1)
    one_bit.putpixel((0, 0), 0)
    decoded = open_image_rgb(saved(one_bit, tmp_path / "bits.png"))
    assert pixel(decoded, (0, 0)) == BLACK
    assert pixel(decoded, (1, 1)) == WHITE
    for mode, value, expected in [
        ("HSV", (0, 255, 255), (255, 0, 0)),
        ("YCbCr", (255, 128, 128), WHITE),
        ("L", 77, (77, 77, 77)),
        ("RGBX", (1, 2, 3, 0), (1, 2, 3)),
    ]:
        assert pixel(to_rgb(Image.new(mode, (2, 2), value))) == expected, mode
    assert to_rgb(Image.new("LAB", (2, 2), (255, 128, 128))).mode == "RGB"


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = np.zeros((8, 16, 3), dtype=np.uint8)
    stored[:, :8] = (255, 0, 0)  # left half red
    stored[:, 8:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the left edge becomes the top
    path = saved(Image.fromarray(stored), tmp_path / "rotated.jpg", exif=exif, quality=95)
    decoded = open_image_rgb(path)
    assert decoded.size == (8, 16)
    top, bottom = np.asarray(decoded)[2, 4], np.asarray(decoded)[13, 4]
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_broken_exif_keeps_the_pixels(tmp_path: Path) -> None:
    path = saved(Image.new("RGB", (8, 8), (0, 200, 0)), tmp_path / "exif.jpg", exif=b"Exif\x00\x00MM\x00*garbage")
    assert open_image_rgb(path).size == (8, 8)


@pytest.mark.parametrize("suffix", [".gif", ".png", ".webp"])
def test_animated_images_use_their_first_frame(tmp_path: Path, suffix: str) -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in [(250, 0, 0), (0, 250, 0), (0, 0, 250)]]
    path = tmp_path / f"animated{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)
    with Image.open(path) as raw:
        assert getattr(raw, "n_frames", 1) == 3
    red, green, blue = pixel(open_image_rgb(path), (8, 8))
    assert red > 200 and green < 30 and blue < 30


def test_real_photo_decodes() -> None:
    if not SHARED_CAT_PHOTO.is_file():
        pytest.skip(f"shared photo missing: {SHARED_CAT_PHOTO}")
    image = open_image_rgb(SHARED_CAT_PHOTO)
    assert image.mode == "RGB" and image.size == (451, 300)


# -- bad files --------------------------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match=r"empty\.png: empty file"):
        open_image_rgb(path)


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list: eggs, milk\n")
    with pytest.raises(ImageDecodeError, match="not an image"):
        open_image_rgb(path)


def test_missing_directory_and_fifo(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="file not found"):
        open_image_rgb(tmp_path / "nope.png")
    with pytest.raises(ImageDecodeError, match="is a directory"):
        open_image_rgb(tmp_path)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        open_image_rgb(fifo)  # must not block waiting for a writer


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_files_are_errors(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    whole = saved(noisy, tmp_path / f"whole{suffix}")
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ImageDecodeError, match=r"cut\.(png|jpg): .*(truncated|corrupt)"):
        open_image_rgb(cut)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_images_stay_refused_even_if_someone_enables_padding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = saved(Image.new("RGB", (8, 8)), tmp_path / "fine.png")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageDecodeError, match="LOAD_TRUNCATED_IMAGES"):
        open_image_rgb(path)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (a decompression bomb's calling card), with a tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_an_error_not_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    filters_before = list(warnings.filters)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(100_000, 100_000))  # 10 gigapixels, above 2x Pillow's limit
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageDecodeError, match="bomb"):
            open_image_rgb(bomb)
        # Between 1x and 2x Pillow's limit Pillow only warns; we refuse.
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
        warning_zone = saved(Image.new("RGB", (40, 30)), tmp_path / "warning_zone.png")  # 1200 pixels
        with pytest.raises(ImageDecodeError, match="bomb"):
            open_image_rgb(warning_zone)
    assert [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)] == []
    assert warnings.filters == filters_before


def test_pixel_limit_is_configurable_and_capped_by_pillow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = saved(Image.new("RGB", (40, 40)), tmp_path / "square.png")  # 1600 pixels
    assert open_image_rgb(path, max_pixels=1600).size == (40, 40)
    with pytest.raises(ImageDecodeError, match="1,600 pixels exceeds the decompression-bomb limit of 1,599"):
        open_image_rgb(path, max_pixels=1599)
    assert effective_pixel_limit(None) == Image.MAX_IMAGE_PIXELS
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    assert effective_pixel_limit(10_000) == 500


def test_threaded_decoding_leaves_warning_filters_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    small = saved(Image.new("RGB", (20, 20), (1, 2, 3)), tmp_path / "small.png")
    big = saved(Image.new("RGB", (40, 30)), tmp_path / "big.png")
    filters_before = list(warnings.filters)
    outcomes: list[str] = []

    def work(index: int) -> None:
        for _ in range(30):
            try:
                open_image_rgb(big if index % 2 else small)
                outcomes.append("ok")
            except ImageDecodeError:
                outcomes.append("refused")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == outcomes.count("refused") == 90
    assert warnings.filters == filters_before


def test_decode_bytes_in_memory() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (5, 3), (9, 8, 7)).save(buffer, "PNG")
    assert pixel(decode_image_bytes(buffer.getvalue())) == (9, 8, 7)
    with pytest.raises(ImageDecodeError, match="<bytes>: empty"):
        decode_image_bytes(b"")
