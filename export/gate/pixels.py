"""The parity gate's part for the pixel input form: raw pixels at their own sizes, and the graph's resize.

- **Images at other sizes.** The gate's real images, resized with Pillow (a 4:3 upscale, a tall stretch, sides one
  pixel off the contract's) or cropped and upscaled (seeded), plus the image files the preprocessing check reads at
  their own sizes (``--preprocess-check`` files, a few files of an image-folder data set). The file gets the raw
  pixels, one forward call per size; the reference gets the training-time preprocessing (Pillow resize to the
  contract size, normalise): for fp32 the PyTorch model; for fp16 and int8
  the same file (their loss against PyTorch is gated on the real images already, and on the near-ties of images
  that far from the training data it flips a top-1 whatever the preprocessing). fp32 and fp16 are judged on top-1
  agreement (``sized_min_agreement``: a 1-LSB resize rounding can turn a near-tie), int8 on the accuracy drop on
  labelled images. Logit differences are reported, not
  bounded: where the graph's resize rounds a value the other way from Pillow's (at most 1 LSB, next check) the
  logits differ by more than float reordering does.
- **In-graph resize vs Pillow.** The file's own Resize node, run alone (``formats/pixels.resize_probe``) on images
  of several sizes and aspect ratios, against the runtime's Pillow resize: at most ``resize_max_lsb`` per value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from PIL import Image
from torch import nn

from cifar_edge.export.config import Thresholds
from cifar_edge.export.engines import Engine, torch_engine
from cifar_edge.export.formats.pixels import resize_probe
from cifar_edge.export.gate.checks import Check, Comparison, bounded, compare
from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.images import ImageDecodeError, open_image_rgb
from cifar_edge.runtime.labelled import ArrayImages
from cifar_edge.runtime.preprocess import normalize_batch, resize_to_contract

OTHER_SIZES = "real images at other sizes"
OWN_SIZES = "image files at their own sizes"
RESIZE_CHECK = "in-graph resize vs Pillow max |diff| (LSB)"
# (height, width) the gate's images are resized to: 4:3 up, a tall stretch (down one way, up the other), one pixel
# off each way; and the size crops are upscaled to.
VARIANT_SIZES = ((48, 64), (100, 30), (31, 33))
CROP_SIZE = (72, 56)
# Real images per variant (each variant is one forward call).
VARIANT_IMAGES = 32
# Sizes of the resize check's random images: the variants', a phone photo's 3:2, a sliver, and the contract's own.
RESIZE_SIZES = (*VARIANT_SIZES, (451, 300), (7, 200))
# Images of each variant size the resize check also takes (real pixels: smooth areas and edges).
RESIZE_REAL_IMAGES = 4


@dataclass
class SizedSet:
    """Images of several sizes, grouped by size (one forward call each), with the reference model's scores."""

    name: str
    groups: list[np.ndarray]  # uint8 (n, h, w, 3), one size per group
    resized: np.ndarray  # uint8 (sum n, H, W, 3): the same images resized by Pillow to the contract size
    reference: np.ndarray  # (sum n, classes): Pillow resize > normalise > PyTorch
    labels: np.ndarray | None = None


@dataclass
class PixelInputs:
    """What the pixel-form checks run, made once per export."""

    sets: list[SizedSet] = field(default_factory=list)
    resize_sources: list[np.ndarray] = field(default_factory=list)  # uint8 (h, w, 3) of many sizes
    resize_expected: list[np.ndarray] = field(default_factory=list)  # Pillow's resize of each, at the contract size


def prepare_pixel_inputs(
    module: nn.Module, contract: Contract, images: ArrayImages | None, files: Sequence[Path], seed: int
) -> PixelInputs:
    """The sized sets and the resize check's images, from the gate's real images and ``files``."""
    rng = np.random.default_rng(seed)
    inputs = PixelInputs()
    reference = torch_engine(module)
    if images is not None and len(images):
        chosen = np.sort(rng.permutation(len(images))[:VARIANT_IMAGES])
        groups = [_resized(images.images[chosen], size) for size in VARIANT_SIZES]
        groups.append(_cropped(images.images[chosen], rng))
        labels = None if images.labels is None else np.concatenate([images.labels[chosen]] * len(groups))
        inputs.sets.append(_sized_set(OTHER_SIZES, groups, contract, reference, labels))
        inputs.resize_sources += [image for group in groups for image in group[:RESIZE_REAL_IMAGES]]
        inputs.resize_sources += list(_resized(images.images[chosen[:2]], RESIZE_SIZES[-2]))
    decoded = []
    for path in files:
        try:
            decoded.append(np.asarray(open_image_rgb(path, contract.alpha_background), np.uint8)[None])
        except ImageDecodeError:
            continue  # the preprocessing check reports files that do not decode
    if decoded:
        inputs.sets.append(_sized_set(OWN_SIZES, decoded, contract, reference, None))
        inputs.resize_sources += [group[0] for group in decoded]
    for height, width in (*RESIZE_SIZES, contract.image_size):
        inputs.resize_sources += list(rng.integers(0, 256, size=(2, height, width, 3), dtype=np.uint8))
    inputs.resize_expected = [_pillow(source, contract) for source in inputs.resize_sources]
    return inputs


def _resized(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    return np.stack(
        [np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)) for image in images]
    )


def _cropped(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random box of at least half of each side of each image, upscaled to CROP_SIZE."""
    height, width = CROP_SIZE
    crops = []
    for image in images:
        sides = image.shape[0], image.shape[1]
        box_h, box_w = (int(rng.integers(max(1, side // 2), side + 1)) for side in sides)
        top, left = int(rng.integers(0, sides[0] - box_h + 1)), int(rng.integers(0, sides[1] - box_w + 1))
        crop = Image.fromarray(image).crop((left, top, left + box_w, top + box_h))
        crops.append(np.asarray(crop.resize((width, height), Image.Resampling.BILINEAR)))
    return np.stack(crops)


def _pillow(pixels: np.ndarray, contract: Contract) -> np.ndarray:
    """The runtime's resize (Pillow, the contract's filter) of uint8 (h, w, 3) ``pixels``."""
    return resize_to_contract(Image.fromarray(pixels, "RGB"), contract)


def _sized_set(
    name: str, groups: list[np.ndarray], contract: Contract, reference: Engine, labels: np.ndarray | None
) -> SizedSet:
    resized = np.stack([_pillow(image, contract) for group in groups for image in group])
    return SizedSet(name, groups, resized, reference.run(normalize_batch(resized, contract)), labels)


def sized_results(
    backend: Engine, precision: str, inputs: PixelInputs, thresholds: Thresholds
) -> tuple[list[Comparison], list[Check]]:
    """Each sized set through ``backend`` as raw pixels: the comparisons, and the precision's verdicts on them."""
    comparisons: list[Comparison] = []
    checks: list[Check] = []
    for sized in inputs.sets:
        try:
            output = np.concatenate([np.asarray(backend.forward(group), np.float32) for group in sized.groups])
            if precision == "fp32":
                name, reference = f"{sized.name} (vs PyTorch)", sized.reference
            else:
                name, reference = f"{sized.name} (vs the file on Pillow-resized pixels)", backend.run(sized.resized)
        except Exception as error:  # a graph that cannot take some size fails this check, not the export
            checks.append(Check(f"runs on {sized.name}", False, detail=f"{type(error).__name__}: {first_line(error)}"))
            continue
        comparison = compare(name, reference, output, sized.labels)
        comparisons.append(comparison)
        checks.extend(_verdicts(precision, comparison, thresholds, _sizes(sized.groups)))
    return comparisons, checks


def _verdicts(precision: str, comparison: Comparison, thresholds: Thresholds, sizes: str) -> list[Check]:
    detail = f"{comparison.inputs} inputs, {sizes}; max |logit diff| {comparison.max_abs_diff:.3g}"
    if precision in ("fp32", "fp16"):
        agreement = thresholds.sized_min_agreement  # the resize's own bound is the resize check's
        return [bounded(f"top-1 agreement on {comparison.name}", comparison.top1_agreement, ">=", agreement, detail)]
    if comparison.reference_accuracy is None or comparison.artifact_accuracy is None:
        return []  # int8 is judged on accuracy: unlabelled images are reported only
    drop = comparison.reference_accuracy - comparison.artifact_accuracy
    detail = f"{comparison.artifact_accuracy:.2f}% vs {comparison.reference_accuracy:.2f}%; {detail}"
    limit = thresholds.int8_max_accuracy_drop_pp
    return [bounded(f"accuracy drop on {comparison.name} (pp)", drop, "<=", limit, detail)]


def resize_check(path: Path, inputs: PixelInputs, max_lsb: int) -> Check:
    """The file's Resize against Pillow on every resize source (onnxruntime, CPU): the largest |difference|."""
    import onnxruntime

    try:
        probe = resize_probe(onnx.load_model(str(path), load_external_data=False))
        session = onnxruntime.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        worst: dict[str, int] = {}
        for source, expected in zip(inputs.resize_sources, inputs.resize_expected, strict=True):
            (resized,) = session.run(None, {name: source[None]})
            size = f"{source.shape[0]}x{source.shape[1]}"
            difference = int(np.abs(resized[0].astype(np.int16) - expected.astype(np.int16)).max())
            worst[size] = max(worst.get(size, 0), difference)
    except Exception as error:  # a file without the pixel prefix, or a Resize onnxruntime refuses
        return Check(RESIZE_CHECK, False, detail=f"{type(error).__name__}: {first_line(error)}")
    detail = f"{len(inputs.resize_sources)} images; by size (h x w): " + ", ".join(
        f"{s}: {d}" for s, d in worst.items()
    )
    return bounded(RESIZE_CHECK, max(worst.values(), default=0), "<=", max_lsb, detail)


def _sizes(groups: list[np.ndarray]) -> str:
    return "sizes " + ", ".join(dict.fromkeys(f"{group.shape[1]}x{group.shape[2]}" for group in groups))
