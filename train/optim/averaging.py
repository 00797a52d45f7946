"""Weight averaging: an exponential moving average kept beside the model, or lookahead averaging folded into it.

Both keep their whole state in tensors and plain values (``state_dict``), saved in checkpoint.pt so a resumed run
continues the average exactly where it stopped.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """Exponential moving average of a model's weights (buffers such as BatchNorm statistics are copied).

    The average lives in a separate copy of the model; evaluation and the exported weights use that copy.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: nn.Module, global_step: int) -> None:
        # Early on, the average would be dominated by random initial weights; ramp the decay up.
        decay = min(self.decay, (1 + global_step) / (10 + global_step))
        for averaged, current in zip(self.model.parameters(), model.parameters(), strict=True):
            averaged.lerp_(current, 1 - decay)
        for averaged, current in zip(self.model.buffers(), model.buffers(), strict=True):
            averaged.copy_(current)

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state)


class LookaheadAverage:
    """Lookahead-style averaging: every ``every`` steps the model is pulled into a slow average and continues
    from it (the model *is* the average after each update, so evaluation and export need no second copy).

    The first update snapshots the model's floating-point state (weights and BatchNorm running statistics; the
    integer batch counters are left alone). Each later update at global step ``step`` of ``total_steps`` does
    ``average.lerp_(current, 1 - rho)`` with ``rho = decay**every * (step / total_steps) ** power`` and copies the
    average back into the model: early on rho is ~0 (the average follows the model), near the end it approaches
    ``decay**every`` (strong averaging while the learning rate anneals). :meth:`settle` copies the average into the
    model once more (at each epoch end), dropping the few steps taken since the last update.
    """

    def __init__(self, every: int, decay: float, power: float) -> None:
        self.every, self.decay, self.power = every, decay, power
        self.average: dict[str, torch.Tensor] | None = None

    def due(self, global_step: int) -> bool:
        return global_step % self.every == 0

    @torch.no_grad()
    def update(self, model: nn.Module, global_step: int, total_steps: int) -> None:
        current = _floating_state(model)
        if self.average is None:
            self.average = {name: tensor.detach().clone() for name, tensor in current.items()}
            return
        rho = self.decay**self.every * (global_step / total_steps) ** self.power
        for name, tensor in current.items():
            averaged = self.average[name]
            averaged.lerp_(tensor, 1 - rho)
            tensor.copy_(averaged)

    @torch.no_grad()
    def settle(self, model: nn.Module) -> None:
        """Copy the average into the model (no-op before the first update)."""
        if self.average is None:
            return
        for name, tensor in _floating_state(model).items():
            tensor.copy_(self.average[name])

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        average = state.get("average")
        self.average = None if average is None else {name: t.to(device) for name, t in average.items()}


def _floating_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's floating-point parameters and buffers by state_dict name (live tensors, not copies)."""
    state = model.state_dict(keep_vars=True)
    return {name: tensor.data for name, tensor in state.items() if tensor.is_floating_point()}
