"""The training core, top to bottom: a Trainer runs an epoch of optimizer steps on data held on the device (one step
each), warms up before the clock, scores a split, re-plans its length when the budget clock asks, and saves and
restores its state. fit.py drives it epoch by epoch; prepare.py builds it; state.py holds the records it works with.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cifar_edge.train.augment import EpochDraw, draw_epoch, normalize
from cifar_edge.train.checkpoint import to_cpu
from cifar_edge.train.distributed import (
    SINGLE_PROCESS,
    BatchStats,
    DistributedContext,
    all_reduce_sum,
    average_buffers,
    backward,
    batch_stats,
    rank_slice,
    steps_per_epoch,
    usable_images,
)
from cifar_edge.train.optim import LookaheadAverage, LrSchedule, parameter_groups
from cifar_edge.train.recipes import Recipe
from cifar_edge.train.reporting import Reporter
from cifar_edge.train.state import DeviceData, EpochTotals, Position, StepEvent, check_finite
from cifar_edge.train.tta import with_tta


@dataclass
class _Epoch:
    """The epoch in progress: its draw and shape, and the running tensors its steps add to (on the device)."""

    draw: EpochDraw
    position: Position  # the run's, advanced by every step
    count: int  # images the epoch uses (see distributed.usable_images)
    steps: int  # the epoch ends after this many (a planned run's last epoch may be partial)
    averaging: bool  # lookahead averaging is active this epoch
    losses: torch.Tensor  # per step
    loss_sum: torch.Tensor
    correct: torch.Tensor
    first_step: int = field(init=False)  # where this call started (after a mid-epoch resume, not 0)
    checked: int = field(init=False)  # steps before this one have been checked for NaN/Inf
    done: int = field(init=False)  # steps of this epoch taken so far

    def __post_init__(self) -> None:
        self.first_step = self.checked = self.done = self.position.step


@dataclass(kw_only=True)
class Trainer:
    """One model's training: its optimizer, schedule and average, and the epochs and steps that change them."""

    model: nn.Module
    train_model: Callable[[torch.Tensor], torch.Tensor]  # the model, or its DDP / torch.compile wrapper
    optimizer: torch.optim.Optimizer
    schedule: LrSchedule  # the learning-rate factor per step; scheduler applies it
    scheduler: torch.optim.lr_scheduler.LambdaLR
    recipe: Recipe
    seed: int
    device: torch.device
    mean: torch.Tensor  # (1, 3, 1, 1) on the device
    std: torch.Tensor
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

    def __post_init__(self) -> None:
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.recipe.label_smoothing)
        self.wrapped_for = self._trainable_signature()
        # A CPU check is free; on CUDA each check syncs the device, so look every few steps (and before saving).
        self.finite_check_every = 1 if self.device.type == "cpu" else 25
        self.last_lr: float | None = None  # learning rate of the latest step (weights group)
        self._epoch: _Epoch | None = None  # the epoch in progress, whose length a re-plan may change

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == torch.bfloat16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def steps_per_epoch(self, num_images: int) -> int:
        return steps_per_epoch(num_images, self.recipe.batch_size, self.distributed.world_size)

    def run_steps(self, num_images: int) -> int:
        """The run's optimizer steps: as planned, or every step of recipe.epochs epochs."""
        return self.total_steps or self.recipe.epochs * self.steps_per_epoch(num_images)

    def replan(self, *, at_step: int, total_steps: int, knobs: dict[str, Any]) -> None:
        """Make the run ``total_steps`` long from global step ``at_step`` on, with the recipe's epoch-counted
        ``knobs`` (epochs included) as re-scaled for it: the learning rate's rest is compressed or stretched to the
        new end without a jump, and an epoch in progress takes its new length (the budget clock's re-plans)."""
        self.schedule.replan(at_step, total_steps)
        self.total_steps = total_steps
        self.recipe = replace(self.recipe, **knobs)
        if self._epoch is not None:
            self._epoch.steps = self._epoch_steps(self._epoch.position, len(self._epoch.losses))

    @property
    def epoch_steps(self) -> int:
        """The steps the epoch in progress ends after (0 between epochs)."""
        return 0 if self._epoch is None else self._epoch.steps

    def _epoch_steps(self, position: Position, full_steps: int) -> int:
        """All of an epoch's steps, or what the run has left (a planned run's last epoch), never fewer than taken."""
        left = (self.total_steps or self.recipe.epochs * full_steps) - (position.global_step - position.step)
        return max(position.step, min(full_steps, left))

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
            while epoch.done < epoch.steps:
                stats = self._train_step(data, epoch, stop_requested)
                self._record_step(epoch, stats, totals, reporter)
                progress.advance(stats.size)
                if on_step is not None:
                    event = StepEvent(position.epoch + 1, epoch.done, position.global_step, self.model, self.optimizer)
                    on_step(event)
                readable = (epoch.done - epoch.first_step) % self.finite_check_every == 0
                if stats.stop_agreed(stop_requested, readable) and epoch.done < epoch.steps:
                    break
        # The losses since the last check (a stop, or a re-plan that ended the epoch early, can come between).
        check_finite(epoch.losses, epoch.checked, epoch.done, position)
        self._epoch = None
        return self._end_epoch(epoch, totals, started)

    def _start_epoch(self, data: DeviceData, position: Position, totals: EpochTotals) -> _Epoch:
        """Set the epoch's trainability, draw its order and augmentation, move its running sums to the device."""
        recipe = self.recipe
        full_steps = self.steps_per_epoch(len(data))
        self.prepare_epoch(position.epoch)
        self.model.train()
        return _Epoch(
            draw=draw_epoch(
                len(data),
                self.seed,
                position.epoch,
                crop_padding=recipe.crop_padding,
                flip=recipe.flip,
                flip_mode=recipe.flip_mode,
                device=self.device,
            ),
            position=position,
            count=usable_images(len(data), recipe.batch_size, self.distributed.world_size),
            steps=self._epoch_steps(position, full_steps),
            averaging=self.lookahead is not None and position.epoch >= recipe.average_start_epoch,
            losses=torch.zeros(full_steps, dtype=torch.float32, device=self.device),
            loss_sum=totals.loss_sum.to(self.device),
            correct=totals.correct.to(self.device),
        )

    def _train_step(self, data: DeviceData, epoch: _Epoch, stop_requested: Callable[[], bool]) -> BatchStats:
        """One optimizer step on the epoch's next batch, then the lookahead average when due; the global batch's
        size, mean loss and hits."""
        batch, position, step = self.recipe.batch_size, epoch.position, epoch.done
        start, stop = step * batch, min(epoch.count, (step + 1) * batch)
        # Under torchrun this rank trains on its chunk of the global batch; alone, on all of it.
        first, last = rank_slice(start, stop, self.distributed.rank, self.distributed.world_size)
        inputs = normalize(epoch.draw.batch(data.images, first, last), self.mean, self.std)
        labels = data.labels[epoch.draw.order[first:last]]
        logits, loss = self._forward(inputs, labels)
        self.optimizer.zero_grad(set_to_none=True)
        backward(loss, last - first, stop - start, self.distributed)
        self.last_lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        position.step, position.global_step = step + 1, position.global_step + 1
        if epoch.averaging and self.lookahead is not None and self.lookahead.due(position.global_step):
            average_buffers(self.model, self.distributed)
            self.lookahead.update(self.model, self.schedule.progress(position.global_step))
        hits = (logits.detach().argmax(dim=1) == labels).sum()
        return batch_stats(
            loss.detach(),
            hits,
            chunk=last - first,
            batch=stop - start,
            stop_requested=stop_requested,
            context=self.distributed,
        )

    def _record_step(self, epoch: _Epoch, stats: BatchStats, totals: EpochTotals, reporter: Reporter) -> None:
        """Add the step's loss and hits to the epoch's sums, check for NaN/Inf when due, log when due."""
        step, position = epoch.done, epoch.position
        epoch.losses[step], epoch.done = stats.loss, step + 1
        epoch.loss_sum += stats.loss.double() * stats.size
        epoch.correct += stats.hits
        totals.seen += stats.size
        if (epoch.done - epoch.first_step) % self.finite_check_every == 0 or epoch.done == epoch.steps:
            epoch.checked = check_finite(epoch.losses, epoch.checked, epoch.done, position)
        log_every = self.recipe.log_every
        if log_every and epoch.done % log_every == 0:
            window = epoch.losses[max(epoch.first_step, epoch.done - log_every) : epoch.done]
            reporter.step_loss(position.epoch + 1, epoch.done, epoch.steps, window.mean().item())

    def _end_epoch(self, epoch: _Epoch, totals: EpochTotals, started: float) -> bool:
        """Store the epoch's sums and time; at its end, agree the BatchNorm statistics and settle the average."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        totals.train_seconds += time.perf_counter() - started
        totals.loss_sum, totals.correct = epoch.loss_sum, epoch.correct
        completed = epoch.position.step >= epoch.steps
        if completed:
            average_buffers(self.model, self.distributed)  # every rank ends the epoch with the same statistics
            if epoch.averaging and self.lookahead is not None:
                self.lookahead.settle(self.model)
        return completed

    def _forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training forward (in the training precision) and its loss: one definition for the steps and the
        warm-up, so the warm-up compiles exactly the graph the steps run. With CUDA graphs each call starts a new
        graph iteration."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with self.autocast():
            logits = self.train_model(inputs)
        return logits, self.criterion(logits.float(), labels)

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

    def warm_up(self, data: DeviceData, from_epoch: int) -> None:
        """Run the training forward and backward once per batch shape and per set of trainable parameters that
        epochs ``from_epoch`` onwards will use, then restore the weights and BatchNorm statistics.

        This moves cuDNN's algorithm search and every torch.compile (re)compilation in front of the run (airbench
        times its runs the same way): otherwise the first step, the last partial batch and the epoch where the
        whitening bias freezes each stall inside the timed epochs (for seconds, compiled). It changes nothing the
        run computes: no optimizer step, no random numbers, and the state is put back exactly.
        """
        batch, distributed = self.recipe.batch_size, self.distributed
        count, steps = usable_images(len(data), batch, distributed.world_size), self.steps_per_epoch(len(data))
        if steps == 0:
            return
        sizes = set()
        for start in (0, (steps - 1) * batch):  # a full batch and the last, maybe partial, one
            first, last = rank_slice(start, min(count, start + batch), distributed.rank, distributed.world_size)
            sizes.add(last - first)
        saved = {name: value.clone() for name, value in self.model.state_dict().items()}
        signatures = set()
        self.model.train()
        for epoch in range(from_epoch, self.recipe.epochs):
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

    @torch.no_grad()
    def evaluate(
        self, data: DeviceData, tta: str = "none", in_training_precision: bool = False
    ) -> tuple[float | None, float | None]:
        """(mean cross-entropy without label smoothing, accuracy) of the model on ``data``, averaged over the
        test-time augmentation ``tta``; (None, None) when ``data`` is empty. In float32 (what the export computes)
        unless ``in_training_precision``: bf16 halves the cost of mid-run monitoring."""
        if len(data) == 0:
            return None, None
        self.model.eval()
        scored = with_tta(self.model, tta)
        # Under torchrun each rank scores its slice of the validation set and the sums are added up.
        first, last = rank_slice(0, len(data), self.distributed.rank, self.distributed.world_size)
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss sum, correct
        batch = self.recipe.eval_batch_size
        for start in range(first, last, batch):
            images = data.images[start : min(last, start + batch)].permute(0, 3, 1, 2)
            labels = data.labels[start : min(last, start + batch)]
            with self.autocast() if in_training_precision else contextlib.nullcontext():
                logits = scored(normalize(images, self.mean, self.std)).float()
            sums[0] += F.cross_entropy(logits, labels, reduction="sum").double()
            sums[1] += (logits.argmax(dim=1) == labels).sum()
        self.model.train()
        loss_sum, correct = all_reduce_sum(sums, self.distributed).tolist()
        return loss_sum / len(data), correct / len(data)

    def state_dict(self) -> dict[str, Any]:
        """The trainer's part of checkpoint.pt, as CPU copies: weights, optimizer, schedule, lookahead average."""
        return {
            "model": to_cpu(self.model.state_dict()),
            "optimizer": to_cpu(self.optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict(),
            "lookahead": None if self.lookahead is None else to_cpu(self.lookahead.state_dict()),
        }

    def load_state_dict(self, state: dict[str, Any], train_images: int, plain_schedule: bool) -> None:
        """Put a checkpoint's state back. The run's length is this trainer's (--epochs may have grown it, --lr
        changed the rate): the schedule covers run_steps (its plain shape when ``plain_schedule``, else as saved,
        re-plan included), and the rates are re-derived from the recipe with a fresh start's arithmetic, so
        unchanged values stay bit-identical."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if plain_schedule:
            self.schedule.extend(self.run_steps(train_images))
        base_lrs = [group["lr"] for group in parameter_groups(self.model, self.recipe)]
        self.scheduler.base_lrs = base_lrs
        for group, base_lr in zip(self.optimizer.param_groups, base_lrs, strict=True):
            group["initial_lr"] = base_lr
            group["lr"] = base_lr * self.schedule(self.scheduler.last_epoch)
        if self.lookahead is not None and state.get("lookahead") is not None:
            self.lookahead.load_state_dict(state["lookahead"], self.device)
