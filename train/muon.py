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
    result: torch.Tensor = x.T if tall else x
    return result


def orthogonalize_all(matrices: list[torch.Tensor], steps: int = 3, eps: float = 1e-7) -> list[torch.Tensor]:
    """:func:`orthogonalize` of every matrix, in few operations: one batched Newton-Schulz per distinct shape,
    each iteration fused into three batched matrix products (the same arithmetic up to float rounding)."""
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, matrix in enumerate(matrices):
        by_shape.setdefault(tuple(matrix.shape), []).append(index)
    results: list[torch.Tensor] = [matrices[0]] * len(matrices)
    for indices in by_shape.values():
        x = torch.stack([matrices[index] for index in indices]).float()
        x = x / (torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True) + eps)
        tall = x.shape[1] > x.shape[2]
        if tall:
            x = x.mT
        for _ in range(steps):
            gram = x @ x.mT
            x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
        for index, result in zip(indices, (x.mT if tall else x).unbind(), strict=True):
            results[index] = result
    return results


class FilterMuon(torch.optim.Optimizer):
    """See the module docstring. ``foreach`` batches the step: one multi-tensor operation per stage across a
    group's parameters, and one batched Newton-Schulz per filter shape, instead of a loop of small operations per
    parameter (bench/optimizer_step.py counts them; docs/history.md, 'Muon'). None = batched on CUDA, where a step of
    this small a network is bound by kernel launches; the per-parameter loop on the CPU, which keeps CPU runs
    bit-identical to earlier versions (both paths compute the same step up to float rounding and share one
    state_dict format)."""

    def __init__(
        self,
        groups: Iterable[dict[str, Any]],
        lr: float,
        momentum: float,
        nesterov: bool = True,
        ns_steps: int = 3,
        foreach: bool | None = None,
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": 0.0, "orthogonalize": False}
        super().__init__(list(groups), defaults)
        self.ns_steps = ns_steps
        self.foreach = foreach

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]  # one signature for torch's two overloads
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [parameter for parameter in group["params"] if parameter.grad is not None]
            if not params:
                continue
            batched = self.foreach if self.foreach is not None else params[0].is_cuda
            (self._batched_step if batched else self._looped_step)(group, params)
        return loss

    def _looped_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        lr, momentum, nesterov = group["lr"], group["momentum"], group["nesterov"]
        for parameter, gradient in zip(params, _gradients(params), strict=True):
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
                parameter.add_(update.reshape(parameter.shape).to(parameter.dtype), alpha=-lr)
            else:
                parameter.add_(direction, alpha=-lr)

    def _batched_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        lr, momentum, nesterov = group["lr"], group["momentum"], group["nesterov"]
        gradients: list[torch.Tensor] | tuple[torch.Tensor, ...] = _gradients(params)
        if not group["orthogonalize"] and group["weight_decay"]:
            gradients = torch._foreach_add(gradients, params, alpha=group["weight_decay"])
        continuing = [i for i, parameter in enumerate(params) if "momentum_buffer" in self.state[parameter]]
        for i, parameter in enumerate(params):
            if "momentum_buffer" not in self.state[parameter]:  # the first step: the buffer starts as the gradient
                self.state[parameter]["momentum_buffer"] = gradients[i].clone()
        if continuing:
            buffers = [self.state[params[i]]["momentum_buffer"] for i in continuing]
            torch._foreach_mul_(buffers, momentum)
            torch._foreach_add_(buffers, [gradients[i] for i in continuing])
        buffers = [self.state[parameter]["momentum_buffer"] for parameter in params]
        directions = torch._foreach_add(gradients, buffers, alpha=momentum) if nesterov else buffers
        if not group["orthogonalize"]:
            torch._foreach_add_(params, directions, alpha=-lr)
            return
        scales = torch._foreach_reciprocal(torch._foreach_norm(params))
        torch._foreach_mul_(scales, [len(parameter) ** 0.5 for parameter in params])
        torch._foreach_mul_(params, scales)
        updates = orthogonalize_all([direction.reshape(len(direction), -1) for direction in directions], self.ns_steps)
        shaped = [
            update.reshape(parameter.shape).to(parameter.dtype)
            for update, parameter in zip(updates, params, strict=True)
        ]
        torch._foreach_add_(params, shaped, alpha=-lr)


def _gradients(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """The parameters' gradients (step passes only parameters that have one)."""
    return [parameter.grad for parameter in params if parameter.grad is not None]
