"""The training run's plain records: a split held on the device, where training stands, the running sums of the
epoch in progress, the event passed after every step, and the NaN/Inf check of the losses."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


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
