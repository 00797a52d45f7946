"""The epoch loop: batches gathered and augmented on the device, one optimizer step each, evaluation after."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cifar_edge.train.augment import normalize, plan_epoch
from cifar_edge.train.distributed import (
    SINGLE_PROCESS,
    DistributedContext,
    all_reduce_sum,
    average_buffers,
    rank_slice,
    steps_per_epoch,
    usable_images,
)
from cifar_edge.train.optim.averaging import LookaheadAverage, WeightAverage
from cifar_edge.train.recipes import Recipe
from cifar_edge.train.reporting import Reporter
from cifar_edge.train.tta import with_tta


class NonFiniteLossError(RuntimeError):
    def __init__(self, epoch: int, step: int, global_step: int, value: float) -> None:
        super().__init__(f"loss became {value} at step {global_step} (epoch {epoch}, batch {step})")
        self.epoch, self.step, self.global_step, self.value = epoch, step, global_step, value


@dataclass
class DeviceData:
    """A whole split on the training device: uint8 images (N, H, W, C) = channels-last NCHW, int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_arrays(cls, images: np.ndarray, labels: np.ndarray, device: torch.device) -> DeviceData:
        pixels = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).to(device)
        return cls(pixels, torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device))

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class StepEvent:
    """Passed to ``fit(on_step=...)`` after every optimizer step (for tests, custom logging, early stops)."""

    epoch: int  # 1-based
    step: int  # 1-based, within the epoch
    global_step: int  # 1-based, since the start of the run
    model: nn.Module
    optimizer: torch.optim.Optimizer


@dataclass
class Position:
    """Where training stands: ``epoch`` epochs are complete and ``step`` batches of the next one are done."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0


@dataclass
class EpochTotals:
    """Running sums of the epoch in progress (saved in mid-epoch checkpoints so metrics survive a resume)."""

    loss_sum: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.float64))
    correct: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.int64))
    seen: int = 0
    train_seconds: float = 0.0


def check_finite(losses: torch.Tensor, start: int, stop: int, position: Position) -> int:
    """Raise NonFiniteLossError naming the first NaN/Inf in ``losses[start:stop]`` (steps of the current epoch,
    ``position`` already counting step ``stop``); returns ``stop``, the next unchecked step."""
    window = losses[start:stop]
    finite = torch.isfinite(window)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0])
        step_in_epoch = start + bad + 1
        global_step = position.global_step - (stop - step_in_epoch)
        raise NonFiniteLossError(position.epoch + 1, step_in_epoch, global_step, float(window[bad]))
    return stop


@dataclass
class Trainer:
    model: nn.Module
    train_model: Callable[[torch.Tensor], torch.Tensor]  # the model, or its torch.compile wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    recipe: Recipe
    seed: int
    device: torch.device
    mean: torch.Tensor  # (1, 3, 1, 1) on the device
    std: torch.Tensor
    average: WeightAverage | None = None
    lookahead: LookaheadAverage | None = None
    distributed: DistributedContext = SINGLE_PROCESS
    # Rebuilds train_model from model (DDP, torch.compile) when the trainable parameters change; None = never.
    wrap: Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]] | None = None
    # dtype of the training steps' arithmetic (bfloat16 = autocast); evaluate() uses it only when asked to.
    precision: torch.dtype = torch.float32
    # train_model replays CUDA graphs (torch.compile's reduce-overhead): each step is marked as a new iteration, so
    # the graphs' memory for the last step's outputs is reused, and the warm-up runs each graph twice (cudagraph
    # trees record on the second run), so recording happens before the clock too.
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.recipe.label_smoothing)
        self.wrapped_for = self._trainable_signature()
        # A CPU check is free; on CUDA each check syncs the device, so look every few steps (and before saving).
        self.finite_check_every = 1 if self.device.type == "cpu" else 25
        self.last_lr: float | None = None  # learning rate of the latest step (weights group)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == torch.bfloat16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def steps_per_epoch(self, num_images: int) -> int:
        return steps_per_epoch(num_images, self.recipe.batch_size, self.distributed.world_size)

    def evaluation_model(self) -> nn.Module:
        return self.model if self.average is None else self.average.model

    def train_epoch(
        self,
        data: DeviceData,
        position: Position,
        totals: EpochTotals,
        reporter: Reporter,
        on_step: Callable[[StepEvent], None] | None = None,
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> bool:
        """Run the rest of epoch ``position.epoch``; True when it completed, False when a stop was requested."""
        recipe, distributed = self.recipe, self.distributed
        count = usable_images(len(data), recipe.batch_size, distributed.world_size)
        steps = self.steps_per_epoch(len(data))
        total_steps = recipe.epochs * steps
        self.prepare_epoch(position.epoch)
        plan = plan_epoch(
            len(data),
            self.seed,
            position.epoch,
            crop_padding=recipe.crop_padding,
            flip=recipe.flip,
            flip_mode=recipe.flip_mode,
            device=self.device,
        )
        averaging = self.lookahead is not None and position.epoch >= recipe.average_start_epoch
        losses = torch.zeros(steps, dtype=torch.float32, device=self.device)
        loss_sum, correct = totals.loss_sum.to(self.device), totals.correct.to(self.device)
        first_step, checked = position.step, position.step
        self.model.train()
        started = time.perf_counter()
        description = f"epoch {position.epoch + 1}/{recipe.epochs}"
        with reporter.epoch_progress(description, count, min(count, first_step * recipe.batch_size)) as progress:
            for step in range(first_step, steps):
                start, stop = step * recipe.batch_size, min(count, (step + 1) * recipe.batch_size)
                # Under torchrun this rank trains on its chunk of the global batch; alone, on all of it.
                first, last = rank_slice(start, stop, distributed.rank, distributed.world_size)
                inputs = normalize(plan.batch(data.images, first, last), self.mean, self.std)
                labels = data.labels[plan.order[first:last]]
                logits, loss = self._forward(inputs, labels)
                self.optimizer.zero_grad(set_to_none=True)
                if distributed.enabled:
                    # DDP averages gradients over ranks; weighting by the chunk's share makes that the global
                    # batch's mean even when the last batch splits unevenly.
                    (loss * ((last - first) * distributed.world_size / (stop - start))).backward()
                else:
                    loss.backward()
                self.last_lr = self.optimizer.param_groups[0]["lr"]
                self.optimizer.step()
                self.scheduler.step()
                position.step, position.global_step = step + 1, position.global_step + 1
                if self.average is not None:
                    self.average.update(self.model, position.global_step)
                if averaging and self.lookahead.due(position.global_step):
                    average_buffers(self.model, distributed)
                    self.lookahead.update(self.model, position.global_step, total_steps)
                hits = (logits.detach().argmax(dim=1) == labels).sum()
                if distributed.enabled:
                    # One small all-reduce: the global batch's loss and hits, and whether any rank wants to stop,
                    # so every rank logs, checks for NaN and stops at the same step.
                    votes = torch.tensor(float(stop_requested()), dtype=torch.float64, device=self.device)
                    stats = torch.stack([loss.detach().double() * (last - first), hits.double(), votes])
                    all_reduce_sum(stats, distributed)
                    detached, hits = (stats[0] / (stop - start)).float(), stats[1].long()
                else:
                    stats, detached = None, loss.detach()
                losses[step] = detached
                loss_sum += detached.double() * (stop - start)
                correct += hits
                totals.seen += stop - start
                if (step + 1 - first_step) % self.finite_check_every == 0 or step + 1 == steps:
                    checked = check_finite(losses, checked, step + 1, position)
                if recipe.log_every and (step + 1) % recipe.log_every == 0:
                    window = losses[max(first_step, step + 1 - recipe.log_every) : step + 1]
                    reporter.step_loss(position.epoch + 1, step + 1, steps, window.mean().item())
                progress.advance(stop - start)
                if on_step is not None:
                    on_step(StepEvent(position.epoch + 1, step + 1, position.global_step, self.model, self.optimizer))
                if self._stop_agreed(stats, stop_requested, step + 1 - first_step) and step + 1 < steps:
                    check_finite(losses, checked, step + 1, position)
                    break
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        totals.train_seconds += time.perf_counter() - started
        totals.loss_sum, totals.correct = loss_sum, correct
        completed = position.step >= steps
        if completed:
            average_buffers(self.model, distributed)  # every rank ends the epoch with the same statistics
            if self.average is not None:
                average_buffers(self.average.model, distributed)
            if averaging:
                self.lookahead.settle(self.model)
        return completed

    def warm_up(self, data: DeviceData, from_epoch: int) -> None:
        """Run the training forward and backward once per batch shape and per set of trainable parameters that
        epochs ``from_epoch`` onwards will use, then restore the weights and BatchNorm statistics.

        This moves cuDNN's algorithm search and every torch.compile (re)compilation in front of the run (airbench
        times its runs the same way): otherwise the first step, the last partial batch and the epoch where the
        whitening bias freezes each stall inside the timed epochs (for seconds, compiled). It changes nothing the
        run computes: no optimizer step, no random numbers, and the state is put back exactly.
        """
        recipe, distributed = self.recipe, self.distributed
        count = usable_images(len(data), recipe.batch_size, distributed.world_size)
        steps = self.steps_per_epoch(len(data))
        if steps == 0:
            return
        sizes = set()
        for start in (0, (steps - 1) * recipe.batch_size):  # a full batch and the last, maybe partial, one
            first, last = rank_slice(
                start, min(count, start + recipe.batch_size), distributed.rank, distributed.world_size
            )
            sizes.add(last - first)
        saved = {name: value.clone() for name, value in self.model.state_dict().items()}
        signatures = set()
        self.model.train()
        for epoch in range(from_epoch, recipe.epochs):
            self.prepare_epoch(epoch)
            signature = self._trainable_signature()
            if signature in signatures:
                continue
            signatures.add(signature)
            for size in sorted(sizes, reverse=True):
                inputs = normalize(data.images[:size].permute(0, 3, 1, 2), self.mean, self.std)
                for _ in range(2 if self.cuda_graphs else 1):
                    self._forward(inputs, data.labels[:size])[1].backward()
        self.optimizer.zero_grad(set_to_none=True)
        self.model.load_state_dict(saved)
        self.prepare_epoch(from_epoch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training forward (in the training precision) and its loss: one definition for the steps and the
        warm-up, so the warm-up compiles exactly the graph the steps run. With CUDA graphs each call starts a new
        graph iteration."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with self.autocast():
            logits = self.train_model(inputs)
        return logits, self.criterion(logits.float(), labels)

    def _stop_agreed(self, stats: torch.Tensor | None, stop_requested: Callable[[], bool], done: int) -> bool:
        """Alone: whether a stop was requested. Under torchrun: whether any rank voted to stop, read only where
        the loss is checked anyway (reading it synchronises the GPU), so all ranks stop at the same step."""
        if stats is None:
            return stop_requested()
        return done % self.finite_check_every == 0 and bool(stats[2] > 0)

    def _trainable_signature(self) -> tuple[bool, ...]:
        return tuple(parameter.requires_grad for parameter in self.model.parameters())

    def prepare_epoch(self, epoch: int) -> None:
        """Per-epoch trainability, a function of the epoch alone (so a resumed run sets it the same way)."""
        freeze_after = self.recipe.whiten_bias_epochs
        bias = getattr(getattr(self.model, "whiten", None), "bias", None)
        if freeze_after > 0 and isinstance(bias, nn.Parameter):
            bias.requires_grad_(epoch < freeze_after)
        signature = self._trainable_signature()
        if self.wrap is not None and signature != self.wrapped_for:
            self.train_model, self.wrapped_for = self.wrap(self.model), signature

    @torch.no_grad()
    def evaluate(
        self, data: DeviceData, tta: str = "none", in_training_precision: bool = False
    ) -> tuple[float | None, float | None]:
        """(mean cross-entropy without label smoothing, accuracy) of the evaluation model, averaged over the
        test-time augmentation ``tta``, on ``data``; (None, None) when ``data`` is empty. In float32 (what the
        export computes) unless ``in_training_precision``: bf16 halves the cost of mid-run monitoring."""
        if len(data) == 0:
            return None, None
        model = self.evaluation_model()
        model.eval()
        scored = with_tta(model, tta)
        # Under torchrun each rank scores its slice of the validation set and the sums are added up.
        first, last = rank_slice(0, len(data), self.distributed.rank, self.distributed.world_size)
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss sum, correct
        batch = self.recipe.eval_batch_size
        for start in range(first, last, batch):
            images = data.images[start : min(last, start + batch)].permute(0, 3, 1, 2)
            labels = data.labels[start : min(last, start + batch)]
            inputs = normalize(images, self.mean, self.std)
            with self.autocast() if in_training_precision else contextlib.nullcontext():
                logits = scored(inputs).float()
            sums[0] += F.cross_entropy(logits, labels, reduction="sum").double()
            sums[1] += (logits.argmax(dim=1) == labels).sum()
        model.train()
        loss_sum, correct = all_reduce_sum(sums, self.distributed).tolist()
        return loss_sum / len(data), correct / len(data)
