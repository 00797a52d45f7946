"""The epoch loop: batches gathered and augmented on the device, one optimizer step each, evaluation after."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cifar_edge.train.augment import EpochPlan, normalize, plan_epoch
from cifar_edge.train.distill import SoftTargets, mixed_loss
from cifar_edge.train.distributed import (
    SINGLE_PROCESS,
    DistributedContext,
    all_reduce_sum,
    average_buffers,
    rank_slice,
    steps_per_epoch,
    usable_images,
)
from cifar_edge.train.evaluation import evaluate
from cifar_edge.train.optim.averaging import LookaheadAverage, WeightAverage
from cifar_edge.train.recipes import Recipe
from cifar_edge.train.reporting import Reporter
from cifar_edge.train.state import DeviceData, EpochTotals, Position, StepEvent, check_finite
from cifar_edge.train.state import NonFiniteLossError as NonFiniteLossError  # callers catch it from here
from cifar_edge.train.warm_up import warm_up


@dataclass
class _Epoch:
    """The epoch in progress: its fixed shape, its plan and the running tensors its steps add to."""

    plan: EpochPlan
    count: int  # images the epoch uses (see distributed.usable_images)
    steps: int  # the epoch ends after this many (fewer than a full epoch's in a planned run's last epoch, or stopped)
    total_steps: int  # of the whole run
    averaging: bool  # lookahead averaging is active this epoch
    first_step: int  # where this call started (after a mid-epoch resume, not 0)
    losses: torch.Tensor  # per step, on the device
    loss_sum: torch.Tensor
    correct: torch.Tensor
    checked: int  # steps before this one have been checked for NaN/Inf
    done: int  # steps of this epoch taken so far


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
    # The run's length in optimizer steps when planned to a budget (its last epoch partial); 0 = recipe.epochs whole.
    total_steps: int = 0
    # The one-pass teacher (Recipe.distill; None = labels only).
    soft_targets: SoftTargets | None = None

    def __post_init__(self) -> None:
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.recipe.label_smoothing)
        self.wrapped_for = self._trainable_signature()
        # A CPU check is free; on CUDA each check syncs the device, so look every few steps (and before saving).
        self.finite_check_every = 1 if self.device.type == "cpu" else 25
        self.last_lr: float | None = None  # learning rate of the latest step (weights group)
        self._epoch: _Epoch | None = None  # the epoch train_epoch is running

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == torch.bfloat16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def steps_per_epoch(self, num_images: int) -> int:
        return steps_per_epoch(num_images, self.recipe.batch_size, self.distributed.world_size)

    def run_steps(self, num_images: int) -> int:
        """The run's optimizer steps: as planned, or every step of recipe.epochs epochs."""
        return self.total_steps or self.recipe.epochs * self.steps_per_epoch(num_images)

    def end_epoch_now(self) -> None:
        """From on_step: make the step just taken the last of its epoch (a deadline; the schedule is left alone)."""
        if self._epoch is not None:
            self._epoch.steps = self._epoch.done

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
        epoch = self._epoch = self._start_epoch(data, position, totals)
        started = time.perf_counter()
        description = f"epoch {position.epoch + 1}/{self.recipe.epochs}"
        done_images = min(epoch.count, epoch.first_step * self.recipe.batch_size)
        with reporter.epoch_progress(description, epoch.count, done_images) as progress:
            while epoch.done < epoch.steps:  # epoch.steps may shrink under us (end_epoch_now)
                step = epoch.done
                size, detached, hits, stats = self._train_step(data, epoch, step, position, stop_requested)
                self._record_step(epoch, step, size, detached, hits, position, totals, reporter)
                progress.advance(size)
                if on_step is not None:
                    on_step(StepEvent(position.epoch + 1, step + 1, position.global_step, self.model, self.optimizer))
                if self._stop_agreed(stats, stop_requested, step + 1 - epoch.first_step) and step + 1 < epoch.steps:
                    check_finite(epoch.losses, epoch.checked, step + 1, position)
                    break
        return self._end_epoch(epoch, position, totals, started)

    def _start_epoch(self, data: DeviceData, position: Position, totals: EpochTotals) -> _Epoch:
        """Set the epoch's trainability, draw its plan and move its running sums to the device."""
        recipe = self.recipe
        count = usable_images(len(data), recipe.batch_size, self.distributed.world_size)
        full_steps, total_steps = self.steps_per_epoch(len(data)), self.run_steps(len(data))
        # The epoch's steps: all of them, or what the run has left (a planned run's last epoch).
        steps = max(position.step, min(full_steps, total_steps - (position.global_step - position.step)))
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
        losses = torch.zeros(full_steps, dtype=torch.float32, device=self.device)
        loss_sum, correct = totals.loss_sum.to(self.device), totals.correct.to(self.device)
        self.model.train()
        first = position.step
        return _Epoch(plan, count, steps, total_steps, averaging, first, losses, loss_sum, correct, first, first)

    def _train_step(
        self, data: DeviceData, epoch: _Epoch, step: int, position: Position, stop_requested: Callable[[], bool]
    ) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One optimizer step on batch ``step`` and the averages' updates; returns the global batch's size, mean
        loss and hits, and (under torchrun) the all-reduced stats that carry the ranks' stop votes."""
        recipe, distributed = self.recipe, self.distributed
        start, stop = step * recipe.batch_size, min(epoch.count, (step + 1) * recipe.batch_size)
        # Under torchrun this rank trains on its chunk of the global batch; alone, on all of it.
        first, last = rank_slice(start, stop, distributed.rank, distributed.world_size)
        inputs = normalize(epoch.plan.batch(data.images, first, last), self.mean, self.std)
        indices = epoch.plan.order[first:last]
        labels = data.labels[indices]
        teacher = self._teacher(inputs, indices, position.global_step, epoch.total_steps)
        logits, loss = self._forward(inputs, labels, teacher)
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
        if self.soft_targets is not None:
            self._record_predictions(logits, epoch.plan.order[start:stop], start, first, last, position.global_step)
        if epoch.averaging and self.lookahead.due(position.global_step):
            average_buffers(self.model, distributed)
            self.lookahead.update(self.model, position.global_step, epoch.total_steps)
        hits = (logits.detach().argmax(dim=1) == labels).sum()
        if not distributed.enabled:
            return stop - start, loss.detach(), hits, None
        # One small all-reduce: the global batch's loss and hits, and whether any rank wants to stop,
        # so every rank logs, checks for NaN and stops at the same step.
        votes = torch.tensor(float(stop_requested()), dtype=torch.float64, device=self.device)
        stats = torch.stack([loss.detach().double() * (last - first), hits.double(), votes])
        all_reduce_sum(stats, distributed)
        return stop - start, (stats[0] / (stop - start)).float(), stats[1].long(), stats

    def _record_step(
        self,
        epoch: _Epoch,
        step: int,
        size: int,
        loss: torch.Tensor,
        hits: torch.Tensor,
        position: Position,
        totals: EpochTotals,
        reporter: Reporter,
    ) -> None:
        """Add step ``step``'s loss and hits to the epoch's sums, check for NaN/Inf when due, log when due."""
        epoch.losses[step], epoch.done = loss, step + 1
        epoch.loss_sum += loss.double() * size
        epoch.correct += hits
        totals.seen += size
        if (step + 1 - epoch.first_step) % self.finite_check_every == 0 or step + 1 == epoch.steps:
            epoch.checked = check_finite(epoch.losses, epoch.checked, step + 1, position)
        log_every = self.recipe.log_every
        if log_every and (step + 1) % log_every == 0:
            window = epoch.losses[max(epoch.first_step, step + 1 - log_every) : step + 1]
            reporter.step_loss(position.epoch + 1, step + 1, epoch.steps, window.mean().item())

    def _end_epoch(self, epoch: _Epoch, position: Position, totals: EpochTotals, started: float) -> bool:
        """Store the epoch's sums and time; at its end, agree the BatchNorm statistics and settle the averages."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        totals.train_seconds += time.perf_counter() - started
        totals.loss_sum, totals.correct = epoch.loss_sum, epoch.correct
        completed = position.step >= epoch.steps
        if completed:
            average_buffers(self.model, self.distributed)  # every rank ends the epoch with the same statistics
            if self.average is not None:
                average_buffers(self.average.model, self.distributed)
            if epoch.averaging:
                self.lookahead.settle(self.model)
        return completed

    def warm_up(self, data: DeviceData, from_epoch: int) -> None:
        """Compile and autotune before the clock, changing nothing: :func:`cifar_edge.train.warm_up.warm_up`."""
        warm_up(self, data, from_epoch)

    def _forward(
        self, inputs: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training forward (in the training precision) and its loss (mixed with the teacher's soft targets
        when given): one definition for the steps and the warm-up, so the warm-up compiles exactly the graph the
        steps run. With CUDA graphs each call starts a new graph iteration."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with self.autocast():
            logits = self.train_model(inputs)
        loss = self.criterion(logits.float(), labels)
        return logits, mixed_loss(loss, logits, teacher, self.recipe.distill_weight)

    def _teacher(
        self, inputs: torch.Tensor, indices: torch.Tensor, global_step: int, total_steps: int
    ) -> torch.Tensor | None:
        """The soft targets of this step's batch, from distill_start (a share of the run's steps) on."""
        if self.soft_targets is None or global_step < self.recipe.distill_start * total_steps:
            return None
        return self.soft_targets.targets(self.model, inputs, indices, self.autocast)

    def _record_predictions(
        self, logits: torch.Tensor, indices: torch.Tensor, start: int, first: int, last: int, global_step: int
    ) -> None:
        """Fold the step into the teacher; under torchrun the global batch's logits are summed from the ranks'
        rows first (``indices`` are the global batch's), so every rank's per-image table stays the same."""
        batch = logits.detach().float()
        if self.distributed.enabled and self.soft_targets.table is not None:
            batch = torch.zeros(len(indices), logits.shape[1], device=self.device)
            batch[first - start : last - start] = logits.detach().float()
            all_reduce_sum(batch, self.distributed)
        elif self.distributed.enabled:
            indices = indices[first - start : last - start]
        self.soft_targets.record(self.model, batch, indices, global_step)

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

    def evaluate(
        self, data: DeviceData, tta: str = "none", in_training_precision: bool = False
    ) -> tuple[float | None, float | None]:
        """(loss, accuracy) of the evaluation model on ``data``: see :func:`cifar_edge.train.evaluation.evaluate`."""
        return evaluate(self, data, tta, in_training_precision)
