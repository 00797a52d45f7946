"""Soft targets for a one-pass model: what test-time augmentation averages, taught to the network during training.

Three teachers, picked by ``Recipe.distill`` (docs/training.md, 'One pass'):

- ``temporal``: each training image's softmax output, averaged over the epochs it was seen (an exponential moving
  average per image, Laine & Aila's temporal ensembling). Every epoch shows an image flipped the other way and shifted
  anew, so the average is the model's own flip/shift ensemble; it costs no extra forward pass.
- ``flip``: the model's own prediction on the mirrored batch (no gradients, inference mode): flip consistency, the
  1-view version of flip TTA. One extra forward pass per step from ``distill_start`` on.
- ``ema``: a slow exponential moving average of the weights (a copy kept beside the model) on the same batch.
  One extra forward pass per step from ``distill_start`` on, plus the average's update every step.

The loss is ``(1 - w) * cross_entropy(labels) + w * KL(teacher || student)``: the KL term is zero exactly when the
student's distribution equals the teacher's, and the teacher's probabilities are constants (no gradient reaches it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cifar_edge.train.optim.averaging import WeightAverage

# The teachers that cost an extra forward pass per step (the budget planner prices it).
TEACHER_PASS_MODES = ("flip", "ema")


def distillation_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(teacher || student); the teacher is detached, so only the student learns."""
    teacher = teacher_probs.detach().float()
    log_student = F.log_softmax(student_logits.float(), dim=1)
    return F.kl_div(log_student, teacher, reduction="batchmean")


def mixed_loss(
    hard_loss: torch.Tensor, student_logits: torch.Tensor, teacher_probs: torch.Tensor | None, weight: float
) -> torch.Tensor:
    """The label loss alone while there is no teacher, else its mix with the distillation term."""
    if teacher_probs is None or weight == 0:
        return hard_loss
    return (1 - weight) * hard_loss + weight * distillation_loss(student_logits, teacher_probs)


class SoftTargets:
    """The teacher of one run: its state (saved in checkpoints) and the targets of each batch. Under torchrun the
    loop records the global batch's predictions on every rank, so every rank keeps the same per-image table."""

    def __init__(
        self, mode: str, model: nn.Module, train_images: int, num_classes: int, momentum: float, ema_decay: float
    ) -> None:
        self.mode, self.momentum = mode, momentum
        self.table = torch.zeros(train_images, num_classes) if mode == "temporal" else None
        self.seen = torch.zeros(train_images, dtype=torch.int32) if mode == "temporal" else None
        self.average = WeightAverage(model, ema_decay) if mode == "ema" else None

    def to(self, device: torch.device) -> SoftTargets:
        if self.table is not None:
            self.table, self.seen = self.table.to(device), self.seen.to(device)
        if self.average is not None:
            self.average.model.to(device)
        return self

    def targets(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        indices: torch.Tensor,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    ) -> torch.Tensor | None:
        """Teacher probabilities for the rank's batch (``indices`` into the training set); None where it has none."""
        if self.mode == "temporal":
            seen = self.seen[indices]
            if not bool((seen > 0).all()):
                return None  # the first epoch: not every image has a prediction yet
            # Bias-corrected like Adam's moments: an average of k predictions, not one shrunk towards zero.
            return self.table[indices] / (1 - self.momentum ** seen.float()).unsqueeze(1)
        teacher = self.average.model if self.mode == "ema" else model
        view = torch.flip(inputs, dims=[3]) if self.mode == "flip" else inputs
        was_training = teacher.training
        teacher.eval()  # inference behaviour (running BatchNorm statistics), which is what the export runs
        with torch.no_grad(), autocast():
            probs = F.softmax(teacher(view).float(), dim=1)
        teacher.train(was_training)
        return probs

    @torch.no_grad()
    def record(self, model: nn.Module, logits: torch.Tensor, indices: torch.Tensor, global_step: int) -> None:
        """After a step: fold the batch's predictions into the table, or the weights into the average."""
        if self.table is not None:
            probs = F.softmax(logits.detach().float(), dim=1)
            self.table[indices] = self.momentum * self.table[indices] + (1 - self.momentum) * probs
            self.seen[indices] += 1
        if self.average is not None:
            self.average.update(model, global_step)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"mode": self.mode}
        if self.table is not None:
            state.update(table=self.table, seen=self.seen)
        if self.average is not None:
            state["average"] = self.average.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("mode") != self.mode:
            raise ValueError(f"checkpoint's soft targets are {state.get('mode')!r}, the recipe's {self.mode!r}")
        if self.table is not None:
            self.table.copy_(state["table"])
            self.seen.copy_(state["seen"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])
