"""Batched, on-device data augmentation: random crop with reflect padding and horizontal flip.

The whole uint8 dataset sits on the training device in channels-last order (N, H, W, C), i.e. an NCHW tensor in
``torch.channels_last`` memory format. One advanced-indexing gather per batch does shuffle + crop + flip at once,
on uint8 (4x less memory traffic than on floats), and yields channels-last NCHW batches ready for the model.

Each epoch's randomness (order, crop offsets, flips) is drawn up front from a fresh ``torch.Generator`` seeded by
``(seed, epoch)`` alone. That makes every batch a pure function of (seed, epoch, step): a run resumed mid-epoch
sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from cifar_edge.train.recipes import FLIP_MODES

# Pseudo-epochs for randomness that is not per epoch: -1 picks the whitening images, -2 the alternating flip coins.
WHITENING_PICK_EPOCH = -1
FLIP_COIN_EPOCH = -2


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for (seed, epoch): neighbouring seeds and epochs give unrelated streams."""
    digest = hashlib.sha256(f"cifar-edge:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass(frozen=True)
class EpochDraw:
    """Everything random about one epoch, indexed by position in the epoch (on the training device)."""

    order: torch.Tensor  # int64 (N,): which image comes at each position
    shift_y: torch.Tensor | None  # int64 (N,) in [0, 2 * padding]: crop offset in the padded image
    shift_x: torch.Tensor | None
    flip: torch.Tensor | None  # bool (N,)
    padding: int

    def batch(self, images: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """uint8 channels-last NCHW batch for epoch positions [start, stop)."""
        section = slice(start, stop)
        return gather_batch(
            images,
            self.order[section],
            shift_y=None if self.shift_y is None else self.shift_y[section],
            shift_x=None if self.shift_x is None else self.shift_x[section],
            flip=None if self.flip is None else self.flip[section],
            padding=self.padding,
        )


def draw_epoch(
    num_images: int,
    seed: int,
    epoch: int,
    *,
    shuffle: bool = True,
    crop_padding: int = 0,
    flip: bool = False,
    flip_mode: str = "random",
    device: torch.device | str = "cpu",
) -> EpochDraw:
    """Draw an epoch's order and augmentation parameters from a generator seeded by (seed, epoch).

    ``flip_mode="alternating"``: each image has one coin drawn from ``seed`` alone; even epochs follow it, odd
    epochs invert it, so over any two consecutive epochs every image is seen both ways.
    """
    if flip_mode not in FLIP_MODES:
        raise ValueError(f"flip_mode must be one of {FLIP_MODES}, got {flip_mode!r}")
    generator = torch.Generator(device="cpu")
    generator.manual_seed(epoch_seed(seed, epoch))
    # Drawn on the CPU so the stream is identical on every device; N int64s per epoch is nothing to move.
    order = torch.randperm(num_images, generator=generator) if shuffle else torch.arange(num_images)
    shift_y = shift_x = flips = None
    if crop_padding > 0:
        shifts = torch.randint(0, 2 * crop_padding + 1, (2, num_images), generator=generator)
        shift_y, shift_x = shifts[0].to(device), shifts[1].to(device)
    if flip and flip_mode == "alternating":
        coins = torch.Generator(device="cpu").manual_seed(epoch_seed(seed, FLIP_COIN_EPOCH))
        per_image = torch.rand(num_images, generator=coins) < 0.5
        flips = (per_image[order] ^ bool(epoch % 2)).to(device)
    elif flip:
        flips = (torch.rand(num_images, generator=generator) < 0.5).to(device)
    return EpochDraw(order.to(device), shift_y, shift_x, flips, crop_padding)


def gather_batch(
    images: torch.Tensor,
    index: torch.Tensor,
    shift_y: torch.Tensor | None = None,
    shift_x: torch.Tensor | None = None,
    flip: torch.Tensor | None = None,
    padding: int = 0,
) -> torch.Tensor:
    """Select ``images[index]`` (N, H, W, C), crop each at its shift after reflect padding, mirror where ``flip``.

    Returns (B, C, H, W) in channels-last memory format, same dtype as ``images``. Equivalent, per image, to
    ``F.pad(image, [padding] * 4, mode="reflect")`` cropped at (shift_y, shift_x) and then flipped left-right,
    without materialising the padded batch.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (N, H, W, C), got {tuple(images.shape)}")
    height, width = images.shape[1], images.shape[2]
    if padding >= min(height, width):
        raise ValueError(f"crop padding {padding} must be smaller than the image size {height}x{width}")
    if shift_y is None and shift_x is None and flip is None:
        batch = images[index]
    else:
        count, device = len(index), images.device
        rows = torch.arange(height, device=device).expand(count, height)
        cols = torch.arange(width, device=device).expand(count, width)
        if flip is not None:
            cols = torch.where(flip[:, None], (width - 1) - cols, cols)
        if padding > 0 and shift_y is not None and shift_x is not None:
            rows = _reflect(rows + (shift_y[:, None] - padding), height)
            cols = _reflect(cols + (shift_x[:, None] - padding), width)
        batch = images[index[:, None, None], rows[:, :, None], cols[:, None, :]]
    return batch.permute(0, 3, 1, 2)


def _reflect(position: torch.Tensor, size: int) -> torch.Tensor:
    """Map positions in [-(size-1), 2(size-1)] back into [0, size) by mirroring at the edges (no edge repeat)."""
    last = size - 1
    return last - (last - position.abs()).abs()


def normalize(batch: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> float32 ``(x / 255 - mean) / std`` (the contract's formula), kept channels-last."""
    scaled = batch.float() / 255.0
    return scaled.sub_(mean).div_(std).contiguous(memory_format=torch.channels_last)
