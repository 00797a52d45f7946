"""The warm-up before the clock: every compilation and autotuning a run will need, with nothing it computes kept."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from cifar_edge.train.augment import normalize
from cifar_edge.train.distributed import rank_slice, usable_images
from cifar_edge.train.state import DeviceData

if TYPE_CHECKING:
    from cifar_edge.train.loop import Trainer


def warm_up(trainer: Trainer, data: DeviceData, from_epoch: int) -> None:
    """Run the training forward and backward once per batch shape and per set of trainable parameters that
    epochs ``from_epoch`` onwards will use, then restore the weights and BatchNorm statistics.

    This moves cuDNN's algorithm search and every torch.compile (re)compilation in front of the run (airbench
    times its runs the same way): otherwise the first step, the last partial batch and the epoch where the
    whitening bias freezes each stall inside the timed epochs (for seconds, compiled). It changes nothing the
    run computes: no optimizer step, no random numbers, and the state is put back exactly.
    """
    recipe, distributed = trainer.recipe, trainer.distributed
    count = usable_images(len(data), recipe.batch_size, distributed.world_size)
    steps = trainer.steps_per_epoch(len(data))
    if steps == 0:
        return
    sizes = set()
    for start in (0, (steps - 1) * recipe.batch_size):  # a full batch and the last, maybe partial, one
        first, last = rank_slice(start, min(count, start + recipe.batch_size), distributed.rank, distributed.world_size)
        sizes.add(last - first)
    saved = {name: value.clone() for name, value in trainer.model.state_dict().items()}
    signatures = set()
    trainer.model.train()
    for epoch in range(from_epoch, recipe.epochs):
        trainer.prepare_epoch(epoch)
        signature = trainer._trainable_signature()
        if signature in signatures:
            continue
        signatures.add(signature)
        for size in sorted(sizes, reverse=True):
            inputs = normalize(data.images[:size].permute(0, 3, 1, 2), trainer.mean, trainer.std)
            for _ in range(2 if trainer.cuda_graphs else 1):
                trainer._forward(inputs, data.labels[:size])[1].backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.model.load_state_dict(saved)
    trainer.prepare_epoch(from_epoch)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
