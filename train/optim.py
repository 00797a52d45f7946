"""The recipe's optimisation: parameter groups and optimizer, the learning-rate schedule, lookahead averaging.

Muon's orthogonalised filter updates have their own module (muon.py). Everything here keeps its state in tensors and
plain values, saved in checkpoint.pt, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cifar_edge.train.muon import FilterMuon
from cifar_edge.train.recipes import Recipe


def build_optimizer(model: nn.Module, recipe: Recipe, foreach: bool | None = None) -> torch.optim.Optimizer:
    """The recipe's optimizer over :func:`parameter_groups`; ``foreach`` None = each optimizer's own choice
    (multi-tensor steps on CUDA, per-parameter loops on the CPU)."""
    groups = parameter_groups(model, recipe)
    if recipe.optimizer == "muon":
        return FilterMuon(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov, foreach=foreach)
    return torch.optim.SGD(
        groups,
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
        foreach=foreach,
    )


def parameter_groups(model: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """Two groups: everything trainable outside BatchNorm (group 0: weights, head, other biases such as the
    whitening stem's) at lr / weight_decay; BatchNorm parameters (shifts) at lr * bias_lr_scale, decaying at
    weight_decay / bias_lr_scale (same shrink per step) when decay_norm, else not at all. With the muon
    optimizer, convolution filters (4-D weights) leave group 0 for a third group: orthogonalised updates at
    muon_lr with muon_momentum, no weight decay (they are renormalised every step instead).

    Built from a freshly constructed model (before any per-epoch freezing), so a resumed run's groups match the
    checkpointed optimizer's.
    """
    norm_ids = {
        id(parameter)
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        for parameter in module.parameters(recurse=False)
    }
    trainable = [p for p in model.parameters() if p.requires_grad]
    weights = [p for p in trainable if id(p) not in norm_ids]
    norms = [p for p in trainable if id(p) in norm_ids]
    muon = recipe.optimizer == "muon"
    filters = [p for p in weights if muon and p.ndim == 4]
    weights = [p for p in weights if not (muon and p.ndim == 4)]
    groups = [{"params": weights, "weight_decay": recipe.weight_decay, "lr": recipe.lr}]
    if norms:
        decay = recipe.weight_decay / recipe.bias_lr_scale if recipe.decay_norm else 0.0
        groups.append({"params": norms, "weight_decay": decay, "lr": recipe.lr * recipe.bias_lr_scale})
    if filters:
        groups.append(
            {"params": filters, "lr": recipe.muon_lr, "momentum": recipe.muon_momentum, "orthogonalize": True}
        )
    return groups


class LrSchedule:
    """Learning-rate factor per optimizer step (plain attributes only, so LambdaLR can checkpoint it).

    "constant": 1.0 throughout. "triangle": linear from ``start_factor`` at step 0 up to 1.0 at ``peak_fraction``
    of the steps, then linear down to ``end_factor`` at the last step (``peak_fraction`` 0: a pure linear decay from
    1.0). The triangle's default shape is the Recipe's.
    """

    def __init__(
        self,
        kind: str,
        total_steps: int,
        start_factor: float = Recipe.lr_start_factor,
        peak_fraction: float = Recipe.lr_peak_fraction,
        end_factor: float = Recipe.lr_end_factor,
    ) -> None:
        self.kind, self.total_steps = kind, total_steps
        self.start_factor, self.peak_fraction, self.end_factor = start_factor, peak_fraction, end_factor
        # Re-plans (budget/clock.py) keep the first plan's shape over ``planned_total`` steps: from the latest one,
        # at step ``replanned_at`` (at ``replanned_position`` on that shape), the rest of the shape is stretched or
        # compressed to the new end. -1 = none.
        self.replanned_at, self.replanned_position, self.planned_total = -1, -1.0, total_steps

    @classmethod
    def for_recipe(cls, recipe: Recipe, total_steps: int) -> LrSchedule:
        return cls(recipe.schedule, total_steps, recipe.lr_start_factor, recipe.lr_peak_fraction, recipe.lr_end_factor)

    def replan(self, step: int, total_steps: int) -> None:
        """Make the run ``total_steps`` long from ``step`` on, as often as the budget asks: the factor at ``step``
        stays (no jump), and what is left of the warm-up and decay follows at the new pace to the same end."""
        position = self.position(step)
        if self.replanned_at < 0:
            self.planned_total = self.total_steps
        self.replanned_at, self.replanned_position, self.total_steps = step, position, total_steps

    def extend(self, total_steps: int) -> None:
        """The plain schedule over ``total_steps`` from step 0 (a run extended by --epochs: the extension replaces
        any re-plan)."""
        self.replanned_at, self.total_steps = -1, total_steps

    def position(self, step: int) -> float:
        """Where ``step`` lies on the planned shape, in the first plan's steps (from the latest re-plan on)."""
        if self.replanned_at < 0:
            return float(step)
        # Checkpoints from before re-plans could repeat hold one re-plan and no position: it was its own step.
        anchor = self.replanned_position if self.replanned_position >= 0 else float(self.replanned_at)
        stretch = (self.planned_total - 1 - anchor) / max(1, self.total_steps - 1 - self.replanned_at)
        return anchor + (step - self.replanned_at) * stretch

    def progress(self, step: int) -> float:
        """The fraction of the planned work done after ``step`` steps, which re-plans move without a jump: what
        the averaging's strength follows (LookaheadAverage)."""
        total = self.total_steps if self.replanned_at < 0 else self.planned_total
        return self.position(step) / total

    def __call__(self, step: int) -> float:
        if self.replanned_at < 0:
            return self._factor(step, self.total_steps)
        return self._factor(self.position(step), self.planned_total)

    def _factor(self, step: float, total_steps: int) -> float:
        last = total_steps - 1  # the factor at the last optimizer step is end_factor exactly
        if self.kind == "constant" or last <= 0:
            return 1.0
        peak = min(self.peak_fraction * total_steps, last / 2)
        if peak > 0 and step <= peak:  # peak_fraction 0: a pure linear decay from 1.0 at step 0
            return self.start_factor + (1.0 - self.start_factor) * step / peak
        return 1.0 + (self.end_factor - 1.0) * min(1.0, (step - peak) / (last - peak))


class LookaheadAverage:
    """Lookahead-style averaging: every ``every`` steps the model is pulled into a slow average and continues
    from it (the model *is* the average after each update, so evaluation and export need no second copy).

    The first update snapshots the model's floating-point state (weights and BatchNorm running statistics; the
    integer batch counters are left alone). Each later update does ``average.lerp_(current, 1 - rho)`` with
    ``rho = decay**every * progress ** power`` (progress: the fraction of the planned work done, which a budget's
    re-plans move without a jump) and copies the average back into the model: early on rho is ~0 (the average
    follows the model), near the end it approaches ``decay**every`` (strong averaging while the learning rate
    anneals). :meth:`settle` copies the average into the model once more (at each epoch end), dropping the few steps
    taken since the last update.
    """

    def __init__(self, every: int, decay: float, power: float) -> None:
        self.every, self.decay, self.power = every, decay, power
        self.average: dict[str, torch.Tensor] | None = None

    def due(self, global_step: int) -> bool:
        return global_step % self.every == 0

    @torch.no_grad()
    def update(self, model: nn.Module, progress: float) -> None:
        """Pull ``model`` into the average; ``progress``: the fraction of the planned work done (LrSchedule)."""
        current = _floating_state(model)
        if self.average is None:
            self.average = {name: tensor.detach().clone() for name, tensor in current.items()}
            return
        rho = self.decay**self.every * progress**self.power
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
