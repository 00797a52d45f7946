"""The default recipe's trainer features: parameter groups, whitening-bias freezing, alternating flips."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from cifar_edge.train import TrainConfig, fit
from cifar_edge.train.augment import draw_epoch
from cifar_edge.train.config import resolve_recipe
from cifar_edge.train.data.load import Splits
from cifar_edge.train.prepare import open_session
from cifar_edge.train.recipes import get_recipe
from cifar_edge.train.reporting import Reporter
from cifar_edge.train.state import StepEvent


def test_batchnorm_shifts_step_faster_and_shrink_per_step_like_the_weights(
    tiny_splits: Splits, airnet_config: TrainConfig
) -> None:
    config = replace(airnet_config, recipe_overrides={})
    recipe = resolve_recipe(config)
    session = open_session(config, tiny_splits, Reporter(quiet=True))
    model, optimizer = session.trainer.model, session.trainer.optimizer
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    weights, norms, filters = optimizer.param_groups
    norm_names = sorted(names[id(p)] for p in norms["params"])
    assert norm_names and all(".norm" in name and name.endswith(".bias") for name in norm_names)
    assert len(norm_names) == 6  # two shifts per conv group; the BatchNorm scales are frozen
    weight_names = {names[id(p)] for p in weights["params"]}
    assert weight_names == {"whiten.bias", "head.weight"}  # the whitening filters never train
    # Every trainable convolution filter bank takes Muon's orthogonalised steps, at its own rate and momentum.
    filter_names = {names[id(p)] for p in filters["params"]}
    assert filter_names == {f"groups.{g}.conv{c}.weight" for g in range(3) for c in (1, 2)}
    assert filters["orthogonalize"] and not weights["orthogonalize"] and not norms["orthogonalize"]
    assert (filters["initial_lr"], filters["momentum"], filters["weight_decay"]) == (
        recipe.muon_lr,
        recipe.muon_momentum,
        0.0,
    )
    assert (weights["initial_lr"], weights["weight_decay"]) == (recipe.lr, recipe.weight_decay)
    scale = recipe.bias_lr_scale
    assert scale > 1 and (norms["initial_lr"], norms["weight_decay"]) == (
        recipe.lr * scale,
        recipe.weight_decay / scale,
    )
    # The same shrink per step for both groups.
    assert norms["initial_lr"] * norms["weight_decay"] == pytest.approx(weights["initial_lr"] * weights["weight_decay"])
    assert weights["lr"] == pytest.approx(recipe.lr * recipe.lr_start_factor)  # the triangle starts at its start
    assert weights["momentum"] == recipe.momentum and weights["nesterov"]


def test_whitening_bias_trains_then_freezes(tiny_splits: Splits, airnet_config: TrainConfig) -> None:
    """whiten_bias_epochs=1 (the fixture's scaled-down 3): the bias moves in epoch 1, stays fixed from epoch 2."""
    seen: list[tuple[int, bool, torch.Tensor]] = []

    def record(event: StepEvent) -> None:
        bias = event.model.whiten.bias
        seen.append((event.epoch, bias.requires_grad, bias.detach().clone()))

    fit(airnet_config, tiny_splits, on_step=record)
    first = [bias for epoch, _, bias in seen if epoch == 1]
    second = [bias for epoch, _, bias in seen if epoch == 2]
    assert [trainable for epoch, trainable, _ in seen] == [epoch == 1 for epoch, _, _ in seen]
    assert not torch.equal(first[0], first[-1])
    assert all(torch.equal(bias, first[-1]) for bias in second)


def test_alternating_flip_shows_every_image_both_ways_every_two_epochs() -> None:
    count = 64
    flips = []
    for epoch in range(4):
        draw = draw_epoch(count, seed=5, epoch=epoch, flip=True, flip_mode="alternating")
        by_image = torch.empty(count, dtype=torch.bool)
        by_image[draw.order] = draw.flip
        flips.append(by_image)
    assert 0.2 < flips[0].float().mean() < 0.8  # a coin per image, not one for all
    assert torch.equal(flips[1], ~flips[0]) and torch.equal(flips[2], flips[0]) and torch.equal(flips[3], ~flips[0])
    other_seed = draw_epoch(count, seed=6, epoch=0, flip=True, flip_mode="alternating")
    assert not torch.equal(other_seed.flip[other_seed.order.argsort()], flips[0])
    random = [draw_epoch(count, seed=5, epoch=e, flip=True).flip for e in range(2)]
    assert not torch.equal(random[0], ~random[1])  # plain random flips carry no such guarantee


def test_airbench_gpu_recipe_runs_on_the_cpu(tiny_splits: Splits, seed_config: TrainConfig) -> None:
    """A smoke test of the GPU recipe where there is no GPU: full-width AirNet, batch 1024 (one step per epoch)."""
    result = fit(replace(seed_config, recipe="airbench", batch_size=None, epochs=1), tiny_splits)
    record = json.loads(result.run_json.read_text())
    airbench = get_recipe("airbench")
    kwargs = {**airbench.model_kwargs, "num_classes": 3}
    assert record["architecture"] == {"name": airbench.model, "kwargs": kwargs}  # one-pass export: no tta key
    assert record["recipe"]["batch_size"] == airbench.batch_size and record["recipe"]["lr"] == airbench.lr
    assert result.metrics[0]["val_accuracy"] is not None
