"""FilterMuon: orthogonalised updates for convolution filters, Nesterov SGD for the rest."""

from __future__ import annotations

import torch
from torch import nn

from cifar_edge.train.muon import FilterMuon, orthogonalize, orthogonalize_all


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


def _airnet_with_gradients(seed: int) -> tuple[nn.Module, list[dict]]:
    """A small AirNet whose filters (4 shapes, two of them shared by several layers) and other trainable
    parameters carry random gradients, in FilterMuon's two kinds of group."""
    from cifar_edge.train.models import build_model

    torch.manual_seed(seed)
    model = build_model("airnet", widths=[8, 16, 16])
    filters = [p for p in model.parameters() if p.requires_grad and p.ndim == 4]
    others = [p for p in model.parameters() if p.requires_grad and p.ndim != 4]
    for parameter in filters + others:
        parameter.grad = torch.randn_like(parameter)
    return model, [
        {"params": others, "weight_decay": 0.01},
        {"params": filters, "lr": 0.05, "orthogonalize": True},
    ]


def test_orthogonalize_all_matches_one_matrix_at_a_time() -> None:
    generator = torch.Generator().manual_seed(1)
    shapes = [(8, 36), (16, 72), (16, 144), (16, 144), (24, 6), (16, 144)]
    matrices = [torch.randn(shape, generator=generator) for shape in shapes]
    batched = orthogonalize_all(matrices)
    assert [tuple(result.shape) for result in batched] == shapes
    for matrix, result in zip(matrices, batched, strict=True):
        assert torch.allclose(result, orthogonalize(matrix), atol=1e-5)


def test_batched_step_matches_the_per_parameter_loop_and_shares_its_state() -> None:
    looped_model, looped_groups = _airnet_with_gradients(seed=0)
    batched_model, batched_groups = _airnet_with_gradients(seed=0)
    looped = FilterMuon(looped_groups, lr=0.1, momentum=0.85, foreach=False)
    batched = FilterMuon(batched_groups, lr=0.1, momentum=0.85, foreach=True)
    generator = torch.Generator().manual_seed(2)
    for step in range(4):  # the first step creates the momentum buffers, later ones continue them
        looped.step()
        batched.step()
        for a, b in zip(looped_model.parameters(), batched_model.parameters(), strict=True):
            assert torch.allclose(a, b, atol=1e-5), f"step {step}"
            if a.grad is not None:
                fresh = torch.randn(a.shape, generator=generator)
                a.grad.copy_(fresh)
                b.grad.copy_(fresh)
    initial = _airnet_with_gradients(seed=0)[0]
    for now, before in zip(batched_model.parameters(), initial.parameters(), strict=True):
        assert torch.equal(now, before) != now.requires_grad  # every trainable parameter moved, the stem did not
    # One state_dict format: a checkpoint of either path resumes in the other.
    resumed = FilterMuon(_airnet_with_gradients(seed=0)[1], lr=0.1, momentum=0.85, foreach=False)
    resumed.load_state_dict(batched.state_dict())
    for key, entry in looped.state_dict()["state"].items():
        assert torch.allclose(
            entry["momentum_buffer"], resumed.state_dict()["state"][key]["momentum_buffer"], atol=1e-5
        )
