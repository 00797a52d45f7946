"""Data-parallel training under ``torchrun``: process group, per-rank shards of every batch, agreed statistics.

``torchrun --nproc-per-node N cifar-train ...`` starts N copies of the same run. Every rank draws the same epoch plan
from (seed, epoch), so the global permutation is identical everywhere; each global batch of ``batch_size`` images is
cut into N equal, consecutive chunks and rank r trains on chunk r (so a step sees exactly the images a
single-process step would). DistributedDataParallel averages the gradients, every rank applies the same update and
the weights stay identical; BatchNorm statistics are per rank during a step (or synchronised with SyncBatchNorm)
and averaged over the ranks before they are averaged into the lookahead state, evaluated or saved. Only rank 0
writes the run folder and prints.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

# torchrun's environment: the global rank, the number of processes, the rank on this machine.
RANK_ENV, WORLD_SIZE_ENV, LOCAL_RANK_ENV, LOCAL_WORLD_SIZE_ENV = "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    owns_process_group: bool = False  # fit() initialised it, so fit() tears it down

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE_PROCESS = DistributedContext()


def requested_world_size() -> int:
    """How many processes torchrun started (1 when not launched by torchrun)."""
    try:
        return max(1, int(os.environ.get(WORLD_SIZE_ENV, "1")))
    except ValueError:
        return 1


def launched_as_worker() -> bool:
    """True in a torchrun process other than rank 0 (it trains but stays silent)."""
    return requested_world_size() > 1 and os.environ.get(RANK_ENV, "0") != "0"


def start(device_type: str) -> DistributedContext:
    """Join torchrun's process group (nccl on CUDA, gloo on the CPU); the single-process context otherwise."""
    world_size = requested_world_size()
    if world_size == 1:
        return SINGLE_PROCESS
    try:
        rank, local_rank = int(os.environ[RANK_ENV]), int(os.environ[LOCAL_RANK_ENV])
    except (KeyError, ValueError):
        raise ValueError(
            f"{WORLD_SIZE_ENV}={world_size} but {RANK_ENV}/{LOCAL_RANK_ENV} are not set: launch with torchrun"
        ) from None
    local_world_size = int(os.environ.get(LOCAL_WORLD_SIZE_ENV, str(world_size)))
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return DistributedContext(rank, world_size, local_rank, local_world_size, owns)


def stop(context: DistributedContext) -> None:
    if context.owns_process_group and dist.is_initialized():
        dist.destroy_process_group()


def local_batch_size(batch_size: int, world_size: int) -> int:
    """The per-rank batch; ValueError unless the global batch splits evenly."""
    if batch_size % world_size:
        raise ValueError(
            f"--batch-size {batch_size} does not split over {world_size} processes; use a multiple of {world_size}"
        )
    return batch_size // world_size


def rank_slice(start: int, stop: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s consecutive chunk of the global batch [start, stop) (sizes differ by at most one)."""
    count = stop - start
    base, extra = divmod(count, world_size)
    first = start + rank * base + min(rank, extra)
    return first, first + base + (1 if rank < extra else 0)


def usable_images(count: int, batch_size: int, world_size: int) -> int:
    """Images per epoch: all of them, except a last partial batch too small to give every rank one image."""
    remainder = count % batch_size
    return count - remainder if 0 < remainder < world_size else count


def steps_per_epoch(count: int, batch_size: int, world_size: int) -> int:
    """Optimizer steps in one epoch over ``count`` images (the last batch may be partial)."""
    return -(-usable_images(count, batch_size, world_size) // batch_size)


def all_reduce_sum(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    if context.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, context: DistributedContext, device: torch.device | str = "cpu") -> bool:
    """Whether ``flag`` is true on any rank (so all ranks take the same branch, e.g. stopping after Ctrl-C).

    ``device``: where the vote travels (the training device: nccl only moves CUDA tensors)."""
    if not context.enabled:
        return flag
    votes = torch.tensor([int(flag)], dtype=torch.int64, device=device)
    dist.all_reduce(votes, op=dist.ReduceOp.SUM)
    return bool(votes.item())


@torch.no_grad()
def average_buffers(model: nn.Module, context: DistributedContext) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the ranks, so every rank holds the same."""
    if not context.enabled:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(context.world_size)


def broadcast_object(value: Any, context: DistributedContext) -> Any:
    """Rank 0's ``value`` on every rank (e.g. the run folder name rank 0 chose)."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def main_first(context: DistributedContext, work: Callable[[], Any]) -> Any:
    """Run ``work`` on rank 0 first, then on the other ranks (e.g. rank 0 fills a cache the others then read).

    If rank 0 fails, the other ranks raise the same one-line ValueError instead of waiting for it forever.
    """
    if not context.enabled:
        return work()
    if context.is_main:
        try:
            result = work()
        except BaseException as error:
            broadcast_object(f"rank 0 failed: {str(error).strip() or type(error).__name__}", context)
            raise
        broadcast_object(None, context)
        return result
    failure = broadcast_object(None, context)
    if failure is not None:
        raise ValueError(failure)
    return work()


def data_parallel_wrapper(
    context: DistributedContext, device: torch.device, compile_model: bool, compile_mode: str = "default"
) -> Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]]:
    """How the training forward is wrapped: DDP under torchrun, then optionally torch.compile in ``compile_mode``.

    Called again whenever the set of trainable parameters changes (the whitening bias freezes): DDP registers its
    gradient hooks for the parameters that require gradients when it is built.
    """

    def wrap(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        wrapped: Any = model
        if context.enabled:
            device_ids = [device.index] if device.type == "cuda" else None  # session pins cuda:LOCAL_RANK
            # Buffers are averaged at the points where they matter (average_buffers), not broadcast every forward
            # (torch >= 2.14 renamed the switch; syncing them once at construction is harmless: they are equal).
            parameters = inspect.signature(nn.parallel.DistributedDataParallel).parameters
            no_buffer_sync = "forward_sync_buffers" if "forward_sync_buffers" in parameters else "broadcast_buffers"
            wrapped = nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **{no_buffer_sync: False})
        return torch.compile(wrapped, mode=compile_mode) if compile_model else wrapped

    return wrap
