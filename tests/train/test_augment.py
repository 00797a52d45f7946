"""On-device batched augmentation: crop-with-reflect-padding + flip equal the per-image reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cifar_edge.train.augment import draw_epoch, epoch_seed, gather_batch, normalize


def _images(count: int = 12, height: int = 8, width: int = 10) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (count, height, width, 3), dtype=torch.uint8, generator=generator)


def _reference(image_hwc: torch.Tensor, shift_y: int, shift_x: int, flip: bool, padding: int) -> torch.Tensor:
    """torch's own reflect padding, crop, then mirror: one image, CHW."""
    chw = image_hwc.permute(2, 0, 1).float()[None]
    padded = F.pad(chw, [padding] * 4, mode="reflect")[0]
    height, width = image_hwc.shape[:2]
    crop = padded[:, shift_y : shift_y + height, shift_x : shift_x + width]
    return (crop.flip(2) if flip else crop).to(torch.uint8)


@pytest.mark.parametrize("padding", [1, 2, 4])
def test_crop_and_flip_match_reflect_pad_reference(padding: int) -> None:
    images = _images()
    draw = draw_epoch(len(images), seed=3, epoch=0, crop_padding=padding, flip=True)
    batch = draw.batch(images, 2, 11)
    assert batch.shape == (9, 3, 8, 10) and batch.dtype == torch.uint8
    assert batch.is_contiguous(memory_format=torch.channels_last)
    for row, position in enumerate(range(2, 11)):
        expected = _reference(
            images[draw.order[position]],
            int(draw.shift_y[position]),
            int(draw.shift_x[position]),
            bool(draw.flip[position]),
            padding,
        )
        assert torch.equal(batch[row], expected)
    # Both flips, and several offsets, occur: the augmentation is not silently a no-op.
    assert 0 < int(draw.flip.sum()) < len(images)
    assert len(set(draw.shift_x.tolist())) > 1


def test_without_augmentation_batches_are_the_shuffled_images() -> None:
    images = _images()
    draw = draw_epoch(len(images), seed=0, epoch=0)
    assert draw.flip is None and draw.shift_x is None
    assert sorted(draw.order.tolist()) == list(range(len(images)))
    batch = draw.batch(images, 0, len(images))
    assert torch.equal(batch, images[draw.order].permute(0, 3, 1, 2))


def test_epoch_randomness_is_a_pure_function_of_seed_and_epoch() -> None:
    first = draw_epoch(100, seed=7, epoch=3, crop_padding=2, flip=True)
    again = draw_epoch(100, seed=7, epoch=3, crop_padding=2, flip=True)
    for a, b in zip((first.order, first.shift_y, first.flip), (again.order, again.shift_y, again.flip), strict=True):
        assert torch.equal(a, b)
    # Global torch RNG use in between changes nothing.
    torch.rand(1000)
    assert torch.equal(draw_epoch(100, seed=7, epoch=3).order, draw_epoch(100, seed=7, epoch=3).order)
    assert not torch.equal(first.order, draw_epoch(100, seed=7, epoch=4).order)
    assert not torch.equal(first.order, draw_epoch(100, seed=8, epoch=3).order)
    assert epoch_seed(0, 1) != epoch_seed(1, 0)


def test_padding_must_be_smaller_than_the_image() -> None:
    images = _images(height=4, width=4)
    index = torch.arange(2)
    shifts = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match="padding 4"):
        gather_batch(images, index, shifts, shifts, None, padding=4)


def test_normalize_follows_the_contract_formula() -> None:
    batch = _images(count=2).permute(0, 3, 1, 2)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    result = normalize(batch, mean, std)
    assert result.dtype == torch.float32 and result.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(result, (batch.float() / 255.0 - mean) / std)


def test_training_normalisation_equals_the_runtime_preprocessing() -> None:
    """The runtime (numpy, no torch) and training compute bit-identical model inputs from the same pixels."""
    from cifar_edge.runtime.contract import Contract
    from cifar_edge.runtime.preprocess import normalize_batch

    contract = Contract()
    pixels = _images(count=4, height=32, width=32)
    mean = torch.tensor(contract.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(contract.std, dtype=torch.float32).view(1, 3, 1, 1)
    ours = normalize(pixels.permute(0, 3, 1, 2), mean, std)
    runtime = torch.from_numpy(normalize_batch(pixels.numpy(), contract))
    assert torch.equal(ours.contiguous(), runtime)
