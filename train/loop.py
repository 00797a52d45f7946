"""The epoch loop: batches gathered and augmented on the device, one optimizer step each, evaluation after."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cifar_edge.train.augment import normalize, plan_epoch
from cifar_edge.train.averaging import LookaheadAverage, WeightAverage
from cifar_edge.train.recipes import Recipe
from cifar_edge.train.reporting import Reporter


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


class LrSchedule:
    """Learning-rate factor per optimizer step (plain attributes only, so LambdaLR can checkpoint it)."""

    def __init__(
        self,
        kind: str,
        total_steps: int,
        warmup_steps: int = 0,
        start_factor: float = 0.2,
        peak_fraction: float = 0.23,
        end_factor: float = 0.07,
    ) -> None:
        self.kind, self.total_steps, self.warmup_steps = kind, total_steps, warmup_steps
        self.start_factor, self.peak_fraction, self.end_factor = start_factor, peak_fraction, end_factor

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return 1.0
        if self.kind == "triangle":
            last = self.total_steps - 1  # the factor at the last optimizer step is end_factor exactly
            if last <= 0:
                return 1.0
            peak = min(self.peak_fraction * self.total_steps, last / 2)
            if step <= peak:
                return self.start_factor + (1.0 - self.start_factor) * step / peak
            return 1.0 + (self.end_factor - 1.0) * min(1.0, (step - peak) / (last - peak))
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps))


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

    def __post_init__(self) -> None:
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.recipe.label_smoothing)
        # A CPU check is free; on CUDA each check syncs the device, so look every few steps (and before saving).
        self.finite_check_every = 1 if self.device.type == "cpu" else 25
        self.last_lr: float | None = None  # learning rate of the latest step (weights group)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        # bf16 on CUDA only: measured 3x slower than float32 on this CPU.
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def steps_per_epoch(self, num_images: int) -> int:
        return math.ceil(num_images / self.recipe.batch_size)

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
        recipe, count = self.recipe, len(data)
        steps = self.steps_per_epoch(count)
        total_steps = recipe.epochs * steps
        self.prepare_epoch(position.epoch)
        plan = plan_epoch(
            count,
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
                inputs = normalize(plan.batch(data.images, start, stop), self.mean, self.std)
                labels = data.labels[plan.order[start:stop]]
                with self.autocast():
                    logits = self.train_model(inputs)
                loss = self.criterion(logits.float(), labels)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.last_lr = self.optimizer.param_groups[0]["lr"]
                self.optimizer.step()
                self.scheduler.step()
                position.step, position.global_step = step + 1, position.global_step + 1
                if self.average is not None:
                    self.average.update(self.model, position.global_step)
                if averaging and self.lookahead.due(position.global_step):
                    self.lookahead.update(self.model, position.global_step, total_steps)
                detached = loss.detach()
                losses[step] = detached
                loss_sum += detached.double() * (stop - start)
                correct += (logits.detach().argmax(dim=1) == labels).sum()
                totals.seen += stop - start
                if (step + 1 - first_step) % self.finite_check_every == 0 or step + 1 == steps:
                    checked = check_finite(losses, checked, step + 1, position)
                if recipe.log_every and (step + 1) % recipe.log_every == 0:
                    window = losses[max(first_step, step + 1 - recipe.log_every) : step + 1]
                    reporter.step_loss(position.epoch + 1, step + 1, steps, window.mean().item())
                progress.advance(stop - start)
                if on_step is not None:
                    on_step(StepEvent(position.epoch + 1, step + 1, position.global_step, self.model, self.optimizer))
                if stop_requested() and step + 1 < steps:
                    check_finite(losses, checked, step + 1, position)
                    break
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        totals.train_seconds += time.perf_counter() - started
        totals.loss_sum, totals.correct = loss_sum, correct
        completed = position.step >= steps
        if completed and averaging:
            self.lookahead.settle(self.model)
        return completed

    def prepare_epoch(self, epoch: int) -> None:
        """Per-epoch trainability, a function of the epoch alone (so a resumed run sets it the same way)."""
        freeze_after = self.recipe.whiten_bias_epochs
        bias = getattr(getattr(self.model, "whiten", None), "bias", None)
        if freeze_after > 0 and isinstance(bias, nn.Parameter):
            bias.requires_grad_(epoch < freeze_after)

    @torch.no_grad()
    def evaluate(self, data: DeviceData) -> tuple[float | None, float | None]:
        """(mean cross-entropy without label smoothing, accuracy) on ``data``; (None, None) when it is empty."""
        if len(data) == 0:
            return None, None
        model = self.evaluation_model()
        model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        batch = self.recipe.eval_batch_size
        for start in range(0, len(data), batch):
            images = data.images[start : start + batch].permute(0, 3, 1, 2)
            labels = data.labels[start : start + batch]
            inputs = normalize(images, self.mean, self.std)
            with self.autocast():
                logits = model(inputs).float()
                if self.recipe.tta == "flip":
                    logits = (logits + model(inputs.flip(3)).float()) / 2
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
            correct += (logits.argmax(dim=1) == labels).sum()
        model.train()
        return loss_sum.item() / len(data), correct.item() / len(data)
