"""Scoring the evaluation model on a split held on the device: mean cross-entropy and accuracy, TTA included."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from cifar_edge.train.augment import normalize
from cifar_edge.train.distributed import all_reduce_sum, rank_slice
from cifar_edge.train.state import DeviceData
from cifar_edge.train.tta import with_tta

if TYPE_CHECKING:
    from cifar_edge.train.loop import Trainer


@torch.no_grad()
def evaluate(
    trainer: Trainer, data: DeviceData, tta: str = "none", in_training_precision: bool = False
) -> tuple[float | None, float | None]:
    """(mean cross-entropy without label smoothing, accuracy) of the trainer's evaluation model, averaged over the
    test-time augmentation ``tta``, on ``data``; (None, None) when ``data`` is empty. In float32 (what the
    export computes) unless ``in_training_precision``: bf16 halves the cost of mid-run monitoring."""
    if len(data) == 0:
        return None, None
    model = trainer.evaluation_model()
    model.eval()
    scored = with_tta(model, tta)
    # Under torchrun each rank scores its slice of the validation set and the sums are added up.
    first, last = rank_slice(0, len(data), trainer.distributed.rank, trainer.distributed.world_size)
    sums = torch.zeros(2, dtype=torch.float64, device=trainer.device)  # loss sum, correct
    batch = trainer.recipe.eval_batch_size
    for start in range(first, last, batch):
        images = data.images[start : min(last, start + batch)].permute(0, 3, 1, 2)
        labels = data.labels[start : min(last, start + batch)]
        inputs = normalize(images, trainer.mean, trainer.std)
        with trainer.autocast() if in_training_precision else contextlib.nullcontext():
            logits = scored(inputs).float()
        sums[0] += F.cross_entropy(logits, labels, reduction="sum").double()
        sums[1] += (logits.argmax(dim=1) == labels).sum()
    model.train()
    loss_sum, correct = all_reduce_sum(sums, trainer.distributed).tolist()
    return loss_sum / len(data), correct / len(data)
