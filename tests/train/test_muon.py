"""FilterMuon: orthogonalised updates for convolution filters, Nesterov SGD for the rest."""

from __future__ import annotations

import torch
from torch import nn

from cifar_edge.train.muon import FilterMuon, orthogonalize


def test_orthogonalize_flattens_the_spectrum_and_keeps_the_singular_vectors() -> None:
    generator = torch.Generator().manual_seed(0)
    left, _ = torch.linalg.qr(torch.randn(16, 16, generator=generator))
    right, _ = torch.linalg.qr(torch.randn(72, 16, generator=generator))
    spread = torch.logspace(0, -2, 16)  # singular values from 1 down to 0.01
    matrix = left @ torch.diag(spread) @ right.T
    result = orthogonalize(matrix, steps=5)
    singular_values = torch.linalg.svdvals(result)
    assert singular_values.min() > 0.3 and singular_values.max() < 1.6  # 100x spread -> within ~5x of 1
    # Same singular vectors: rotating back into the input's bases leaves a (nearly) diagonal matrix.
    core = left.T @ result @ right
    off_diagonal = core - torch.diag(torch.diagonal(core))
    assert off_diagonal.abs().max() < 1e-3
    assert orthogonalize(matrix.T, steps=5).shape == (72, 16)  # tall matrices work through their transpose


def test_filters_are_renormalised_and_other_groups_take_plain_sgd_steps() -> None:
    torch.manual_seed(0)
    conv, head = nn.Conv2d(4, 8, 3, bias=False), nn.Linear(8, 2, bias=False)
    with torch.no_grad():
        conv.weight.mul_(5.0)
    conv.weight.grad = torch.randn_like(conv.weight)
    head.weight.grad = torch.randn_like(head.weight)
    head_before = head.weight.detach().clone()
    optimizer = FilterMuon(
        [
            {"params": [head.weight], "weight_decay": 0.0},
            {"params": [conv.weight], "lr": 1e-6, "orthogonalize": True},
        ],
        lr=0.1,
        momentum=0.9,
    )
    optimizer.step()
    # A tiny filter step: what remains is the renormalisation to norm sqrt(out_channels).
    assert abs(conv.weight.norm().item() - 8**0.5) < 1e-3
    # Nesterov SGD's first step: buffer = grad, direction = grad + 0.9 * buffer.
    assert torch.allclose(head.weight, head_before - 0.1 * 1.9 * head.weight.grad, atol=1e-6)
    state = optimizer.state_dict()["state"]
    assert set(state) == {0, 1} and all("momentum_buffer" in entry for entry in state.values())
