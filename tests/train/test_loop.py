"""Pieces of the epoch loop: deferred NaN detection, lookahead averaging."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cifar_edge.train.optim import LookaheadAverage
from cifar_edge.train.state import NonFiniteLossError, Position, check_finite


def test_deferred_finite_check_names_the_first_bad_step() -> None:
    """On CUDA the loss is checked every few steps; the error must still name the step that went bad."""
    losses = torch.tensor([1.0, 0.9, float("inf"), float("nan"), 0.5])
    position = Position(epoch=2, step=5, global_step=25)  # 5 steps of epoch 3 done; global step 25
    with pytest.raises(NonFiniteLossError) as caught:
        check_finite(losses, 0, 5, position)
    error = caught.value
    assert (error.epoch, error.step, error.global_step) == (3, 3, 23)
    assert "loss became inf at step 23 (epoch 3, batch 3)" in str(error)
    assert check_finite(losses, 0, 2, position) == 2


def test_lookahead_snapshots_then_pulls_the_model_into_the_average() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    lookahead = LookaheadAverage(every=5, decay=0.95, power=3.0)
    assert not lookahead.due(4) and lookahead.due(10)
    lookahead.settle(model)  # nothing to copy before the first update
    lookahead.update(model, progress=5 / 10)  # the first update only takes a snapshot
    snapshot = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    assert lookahead.average is not None and "1.num_batches_tracked" not in lookahead.average
    assert "1.running_mean" in lookahead.average  # BatchNorm statistics are averaged too

    with torch.no_grad():
        for tensor in (model[0].weight, model[1].running_mean):
            tensor.add_(1.0)
    lookahead.update(model, progress=1.0)
    rho = 0.95**5 * 1.0**3
    for name in ("0.weight", "1.running_mean"):
        expected = snapshot[name] + (1 - rho) * 1.0  # lerp toward (snapshot + 1) by 1 - rho
        assert torch.allclose(lookahead.average[name], expected)
        assert torch.equal(model.state_dict()[name], lookahead.average[name])  # the model continues from it

    with torch.no_grad():
        model[0].weight.add_(3.0)  # steps taken after the last update ...
    lookahead.settle(model)  # ... are dropped at the epoch end
    assert torch.equal(model[0].weight, lookahead.average["0.weight"])

    restored = LookaheadAverage(every=5, decay=0.95, power=3.0)
    restored.load_state_dict(lookahead.state_dict())
    assert restored.average.keys() == lookahead.average.keys()
    assert all(torch.equal(restored.average[k], lookahead.average[k]) for k in restored.average)
