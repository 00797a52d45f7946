"""Orthogonalised-momentum updates for convolution filters (Muon), beside Nesterov SGD for everything else.

torch.optim.Muon only takes 2-D parameters; a convolution's filters are 4-D, and the update wanted here treats
them as the (out_channels, in_channels * kh * kw) matrix they are. One optimizer with two kinds of parameter
group keeps a single state_dict and a single LambdaLR schedule (checkpoints and --resume stay as they are):

- ``orthogonalize=True`` groups (filters): Nesterov momentum, then the update is replaced by an approximately
  orthogonal matrix with the same singular vectors (a few Newton-Schulz iterations), and each filter bank is
  rescaled to Frobenius norm sqrt(out_channels) before the step. BatchNorm follows every such convolution, so the
  scale carries no information and fixing it makes ``lr`` the relative size of every step.
- other groups: Nesterov SGD with coupled weight decay, as torch.optim.SGD computes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

# Quintic Newton-Schulz coefficients that push every singular value of a norm-1 matrix towards ~1 in few steps.
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix: torch.Tensor, steps: int = 3, eps: float = 1e-7) -> torch.Tensor:
    """An approximately orthogonal matrix with ``matrix``'s singular vectors (singular values ~0.5-1.5)."""
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    x = matrix.float() / (matrix.norm() + eps)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class FilterMuon(torch.optim.Optimizer):
    def __init__(
        self, groups: Iterable[dict[str, Any]], lr: float, momentum: float, nesterov: bool = True, ns_steps: int = 3
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": 0.0, "orthogonalize": False}
        super().__init__(list(groups), defaults)
        self.ns_steps = ns_steps

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr, momentum, nesterov = group["lr"], group["momentum"], group["nesterov"]
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                gradient = parameter.grad
                if not group["orthogonalize"] and group["weight_decay"]:
                    gradient = gradient.add(parameter, alpha=group["weight_decay"])
                state = self.state[parameter]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = gradient.clone()
                else:
                    state["momentum_buffer"].mul_(momentum).add_(gradient)
                buffer = state["momentum_buffer"]
                direction = gradient.add(buffer, alpha=momentum) if nesterov else buffer
                if group["orthogonalize"]:
                    parameter.mul_(len(parameter) ** 0.5 / parameter.norm())
                    update = orthogonalize(direction.reshape(len(direction), -1), self.ns_steps)
                    parameter.add_(update.view(parameter.shape).to(parameter.dtype), alpha=-lr)
                else:
                    parameter.add_(direction, alpha=-lr)
        return loss
