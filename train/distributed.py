"""Data-parallel training under ``torchrun``: process group, per-rank shards of every batch, agreed statistics.

``torchrun --nproc-per-node N cifar-train ...`` starts N copies of the same run. Every rank draws the same epoch plan
from (seed, epoch), so the global permutation is identical everywhere; each global batch of ``batch_size`` images is
cut into N equal, consecutive chunks and rank r trains on chunk r (so a step sees exactly the images a
single-process step would). DistributedDataParallel averages the gradients, every rank applies the same update and
the weights stay identical; BatchNorm statistics are per rank during a step (or synchronised with SyncBatchNorm)
and averaged over the ranks before they are averaged into the lookahead state, evaluated or saved. Only rank 0
writes the run folder and prints; where the ranks must agree (the run folder, a budget plan, a re-plan, a stop) rank 0
decides and the others follow.

Every multi-process hook lives here; a single process goes through the same calls, which then do nothing.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")

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


def start(device: torch.device) -> tuple[DistributedContext, torch.device]:
    """Join torchrun's process group (nccl on CUDA, gloo on the CPU) and pin this rank's GPU (cuda:LOCAL_RANK); the
    single-process context and ``device`` as it is otherwise."""
    world_size = requested_world_size()
    if world_size == 1:
        return SINGLE_PROCESS, device
    try:
        rank, local_rank = int(os.environ[RANK_ENV]), int(os.environ[LOCAL_RANK_ENV])
    except (KeyError, ValueError):
        raise ValueError(
            f"{WORLD_SIZE_ENV}={world_size} but {RANK_ENV}/{LOCAL_RANK_ENV} are not set: launch with torchrun"
        ) from None
    local_world_size = int(os.environ.get(LOCAL_WORLD_SIZE_ENV, str(world_size)))
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    context = DistributedContext(rank, world_size, local_rank, local_world_size, owns)
    return context, torch.device("cuda", local_rank) if device.type == "cuda" else device  # one GPU per process


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


def check_options(context: DistributedContext, batch_size: int, sync_batchnorm: bool, device: torch.device) -> None:
    """ValueError (one line) for options this world cannot run: a batch that does not split, SyncBatchNorm off CUDA."""
    local_batch_size(batch_size, context.world_size)
    if sync_batchnorm and context.enabled and device.type != "cuda":
        raise ValueError("--sync-bn needs CUDA (torch's SyncBatchNorm does not run on the CPU); drop it on the CPU")


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


def backward(loss: torch.Tensor, chunk: int, batch: int, context: DistributedContext) -> None:
    """``loss.backward()`` for this rank's ``chunk`` images of a global ``batch``: DDP averages gradients over ranks,
    and weighting by the chunk's share makes that the global batch's mean even when the last batch splits unevenly."""
    if context.enabled:
        loss = loss * (chunk * context.world_size / batch)
    loss.backward()


@dataclass(frozen=True)
class BatchStats:
    """A step's global batch: its size, mean loss and hits, and (under torchrun) the ranks' votes to stop."""

    size: int
    loss: torch.Tensor
    hits: torch.Tensor
    stop_votes: torch.Tensor | None = None  # None alone: the process asks its own stop flag

    def stop_agreed(self, stop_requested: Callable[[], bool], readable: bool) -> bool:
        """Alone: whether a stop was requested. Under torchrun: whether any rank voted to stop, read only when
        ``readable`` (where the loss is checked anyway: reading synchronises the GPU), so all ranks stop together."""
        if self.stop_votes is None:
            return stop_requested()
        return readable and bool(self.stop_votes > 0)


def batch_stats(
    loss: torch.Tensor,
    hits: torch.Tensor,
    *,
    chunk: int,
    batch: int,
    stop_requested: Callable[[], bool],
    context: DistributedContext,
) -> BatchStats:
    """The global batch's stats from this rank's ``chunk`` (its mean ``loss`` and ``hits``): alone, as they are;
    under torchrun one small all-reduce of the loss, the hits and the stop votes, so every rank logs, checks for NaN
    and stops at the same step."""
    if not context.enabled:
        return BatchStats(batch, loss, hits)
    votes = torch.tensor(float(stop_requested()), dtype=torch.float64, device=loss.device)
    stats = all_reduce_sum(torch.stack([loss.double() * chunk, hits.double(), votes]), context)
    return BatchStats(batch, (stats[0] / batch).float(), stats[1].long(), stats[2])


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


def main_decides(context: DistributedContext, decide: Callable[[], T]) -> T:
    """Rank 0's ``decide()`` on every rank (the others do not call it): one decision all ranks follow, e.g. the run
    folder's name or a re-plan judged by rank 0's clock."""
    decision: T = broadcast_object(decide() if context.is_main else None, context)
    return decision


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


def prepare_model(model: nn.Module, context: DistributedContext, sync_batchnorm: bool) -> nn.Module:
    """Under torchrun with ``sync_batchnorm``: BatchNorm statistics over the global batch (SyncBatchNorm keeps the
    same parameters and state_dict names, so an optimizer built before stays valid); ``model`` otherwise."""
    if sync_batchnorm and context.enabled:
        synced: nn.Module = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return synced
    return model


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
            options: dict[str, Any] = {no_buffer_sync: False}
            wrapped = nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **options)
        return torch.compile(wrapped, mode=compile_mode) if compile_model else wrapped

    return wrap
