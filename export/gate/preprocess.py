"""Preprocessing parity: the runtime's Pillow + numpy path against torchvision's reference pipeline.

Runtime: ``open_image_rgb`` > ``resize_to_contract`` > ``normalize_batch`` (what ``cifar-infer`` does).
Reference: Pillow decode > ``Resize((H, W))`` > ``ToTensor`` > ``Normalize(mean, std)`` (torchvision transforms,
what a PyTorch user writes). The reference decodes the torchvision way (``Image.convert("RGB")``, as
``ImageFolder`` does), except that images with transparency are composited on the contract's background first:
``convert`` would drop the alpha channel and expose whatever colour hides under transparent pixels, and the
contract defines compositing instead. EXIF orientation is applied on both sides.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.images import ImageDecodeError, open_image_rgb
from cifar_edge.runtime.preprocess import file_pixels, normalize_batch

_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
# A size that is not the contract's in either direction, like a phone photo cropped to 3:2 (the cat photo's size).
_PROBE_SIZE = (451, 300)


@dataclass(frozen=True)
class FileParity:
    file: str
    mode: str
    size: tuple[int, int]
    max_abs_diff: float | None  # None when the file could not be processed
    error: str | None = None


@dataclass
class PreprocessReport:
    threshold: float
    files: list[FileParity] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> float:
        values = [item.max_abs_diff for item in self.files if item.max_abs_diff is not None]
        return max(values) if values else 0.0

    @property
    def passed(self) -> bool:
        return bool(self.files) and all(
            item.error is None and item.max_abs_diff is not None and item.max_abs_diff <= self.threshold
            for item in self.files
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "max_abs_diff": self.max_abs_diff,
            "passed": self.passed,
            "files": [asdict(item) for item in self.files],
        }


def runtime_tensor(path: str | Path, contract: Contract) -> np.ndarray:
    """float32 (3, H, W) exactly as the runtime feeds the model."""
    return normalize_batch(file_pixels(path, contract)[None], contract)[0]


def torchvision_tensor(path: str | Path, contract: Contract) -> np.ndarray:
    """float32 (3, H, W) from torchvision's Resize((H, W)) > ToTensor > Normalize."""
    from torchvision import transforms

    with Image.open(path) as opened:
        opened.seek(0)
        image = ImageOps.exif_transpose(opened)
        if image.mode in _ALPHA_MODES or "transparency" in image.info:
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (*contract.alpha_background, 255))
            rgb = Image.alpha_composite(background, rgba).convert("RGB")
        else:
            rgb = image.convert("RGB")
    pipeline = transforms.Compose(
        [
            transforms.Resize(tuple(contract.image_size), interpolation=_interpolation(contract.resize_method)),
            transforms.ToTensor(),
            transforms.Normalize(contract.mean, contract.std),
        ]
    )
    return pipeline(rgb).numpy()


def _interpolation(name: str) -> Any:
    from torchvision.transforms import InterpolationMode

    return {
        "nearest": InterpolationMode.NEAREST,
        "bilinear": InterpolationMode.BILINEAR,
        "bicubic": InterpolationMode.BICUBIC,
        "lanczos": InterpolationMode.LANCZOS,
        "box": InterpolationMode.BOX,
        "hamming": InterpolationMode.HAMMING,
    }[name]


def compare_file(path: str | Path, contract: Contract) -> FileParity:
    try:
        with Image.open(path) as image:
            mode, size = image.mode, image.size
    except (OSError, SyntaxError, ValueError) as error:
        return FileParity(str(path), "?", (0, 0), None, f"cannot open: {first_line(error)}")
    try:
        difference = np.abs(runtime_tensor(path, contract) - torchvision_tensor(path, contract))
    except ImageDecodeError as error:
        return FileParity(str(path), mode, size, None, error.reason)
    except ValueError as error:  # e.g. shape mismatch between the two pipelines
        return FileParity(str(path), mode, size, None, str(error))
    return FileParity(str(path), mode, size, float(difference.max()))


def write_probe_files(folder: Path, base: Path | None = None, seed: int = 0) -> list[Path]:
    """Write one image per tricky mode (non-contract size): RGB, L, P, P+transparency, RGBA, LA, CMYK, 1, JPEG.

    ``base`` (a real photo) supplies the pixels when given; otherwise a smooth gradient with noise stands in.
    """
    rgb = _base_image(base, seed)
    alpha = Image.linear_gradient("L").resize(rgb.size)
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    transparent_palette = palette.copy()
    transparent_palette.info["transparency"] = 0
    variants = {
        "rgb.png": rgb,
        "grey.png": rgb.convert("L"),
        "palette.png": palette,
        "palette_transparent.png": transparent_palette,
        "rgba.png": rgba,
        "grey_alpha.png": rgba.convert("LA"),
        "cmyk.jpg": rgb.convert("CMYK"),
        "bilevel.png": rgb.convert("1"),
        "small.jpg": rgb.resize((23, 41)),
    }
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in variants.items():
        path = folder / name
        image.save(path, **({"quality": 90} if name.endswith(".jpg") else {}))
        written.append(path)
    return written


def _base_image(base: Path | None, seed: int) -> Image.Image:
    if base is not None:
        try:
            return open_image_rgb(base)
        except ImageDecodeError:
            pass
    width, height = _PROBE_SIZE
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    smooth = np.stack([xs * 255 / width, ys * 255 / height, (xs + ys) * 127 / (width + height)], axis=-1)
    noisy = smooth + rng.normal(0, 25, size=smooth.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def check_preprocessing(
    contract: Contract, files: Sequence[str | Path] = (), threshold: float = 1e-6, seed: int = 0
) -> PreprocessReport:
    """Compare both pipelines on ``files`` plus generated files in every tricky mode (always included)."""
    report = PreprocessReport(threshold=threshold)
    real = [Path(path) for path in files]
    with tempfile.TemporaryDirectory(prefix="cifar-edge-preprocess-") as folder:
        probes = write_probe_files(Path(folder), base=real[0] if real else None, seed=seed)
        for path in [*real, *probes]:
            result = compare_file(path, contract)
            if path in probes:  # name generated files by what they test, not by their temporary folder
                result = FileParity(f"<generated {path.name}>", *list(asdict(result).values())[1:])
            report.files.append(result)
    return report
