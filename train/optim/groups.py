"""The recipe's optimizer: which parameters train at which rate, decay and update rule."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cifar_edge.train.optim.muon import FilterMuon
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
