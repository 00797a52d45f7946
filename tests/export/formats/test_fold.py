"""The inference form: BatchNorms folded into the convolutions compute what the unfolded model computes."""

from __future__ import annotations

import torch
from torch import nn

from cifar_edge.export.formats.fold import FoldedConvGroup, inference_form
from cifar_edge.train.models import build_model
from cifar_edge.train.tta import with_tta


def _model_with_statistics(seed: int = 0, **kwargs: object) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model("airnet", widths=[8, 16, 16], num_classes=3, **kwargs)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):  # trained-looking statistics, not the identity of a fresh model
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.3, 3.0)
            module.bias.data.normal_(0, 0.3)
    return model.eval()


def test_folded_model_matches_the_original_and_has_no_batchnorm() -> None:
    model = _model_with_statistics()
    folded = inference_form(model)
    inputs = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(inputs), model(inputs), atol=1e-5, rtol=1e-5)
    assert not any(isinstance(module, nn.BatchNorm2d) for module in folded.modules())
    assert any(isinstance(module, nn.BatchNorm2d) for module in model.modules())  # the original is untouched


def test_pool_first_groups_and_tta_wrappers_fold_too() -> None:
    model = with_tta(_model_with_statistics(1, pool_first=[False, True, True]), "flip_shift").eval()
    folded = inference_form(model)
    inputs = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(inputs), model(inputs), atol=1e-5, rtol=1e-5)
    assert sum(isinstance(module, FoldedConvGroup) for module in folded.modules()) == 3


def test_a_negative_scale_before_the_pool_is_left_unfolded() -> None:
    model = _model_with_statistics(2)
    with torch.no_grad():
        model.groups[0].norm1.weight[0] = -1.0  # max pool no longer commutes with this channel's scale
    folded = inference_form(model)
    assert not isinstance(folded.groups[0], FoldedConvGroup)
    assert isinstance(folded.groups[1], FoldedConvGroup)
    inputs = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(inputs), model(inputs), atol=1e-5, rtol=1e-5)
