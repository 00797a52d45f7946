"""The model registry: the tutorial network exactly as published, and the default AirNet."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cifar_edge.train.models import (
    AIRNET_SIZES,
    ArchitectureError,
    available_models,
    build_model,
    count_parameters,
)
from cifar_edge.train.recipes import DEFAULT


def test_seed_network_is_the_published_tutorial_network() -> None:
    model = build_model("seed")
    layers = [(type(layer).__name__, _shape(layer)) for layer in model]
    assert layers == [
        ("Conv2d", (3, 32, 5, 2)),
        ("MaxPool2d", 2),
        ("Conv2d", (32, 32, 5, 2)),
        ("MaxPool2d", 2),
        ("Conv2d", (32, 64, 5, 2)),
        ("MaxPool2d", 2),
        ("Flatten", None),
        ("Linear", (1024, 64)),
        ("Linear", (64, 10)),
    ]
    # No activation functions, exactly as published.
    assert not any(isinstance(layer, (nn.ReLU, nn.GELU, nn.Sigmoid, nn.Tanh)) for layer in model.modules())
    assert count_parameters(model) == 145_578
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def _shape(layer: nn.Module) -> object:
    if isinstance(layer, nn.Conv2d):
        return (layer.in_channels, layer.out_channels, layer.kernel_size[0], layer.padding[0])
    if isinstance(layer, nn.Linear):
        return (layer.in_features, layer.out_features)
    if isinstance(layer, nn.MaxPool2d):
        return layer.kernel_size
    return None


def test_seed_network_refuses_other_image_sizes() -> None:
    with pytest.raises(ValueError, match="32x32"):
        build_model("seed", image_size=[64, 64])


def test_airnet_whitening_decorrelates_patches() -> None:
    torch.manual_seed(0)
    model = build_model("airnet", num_classes=4, widths=[8, 16, 16])
    # Strongly correlated channels: whitening must map 2x2 patches to (nearly) unit covariance.
    mixing = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.3, 0.0], [-0.5, 0.2, 0.4]])
    images = torch.einsum("ij,njhw->nihw", mixing, torch.randn(64, 3, 32, 32))
    model.init_whitening(images)
    features = model.whiten(images) - model.whiten.bias.view(1, -1, 1, 1)
    half = features[:, : features.shape[1] // 2].permute(0, 2, 3, 1).reshape(-1, features.shape[1] // 2)
    covariance = torch.cov(half.T)
    assert torch.allclose(covariance, torch.eye(half.shape[1]), atol=0.05)
    assert model(images[:2]).shape == (2, 4)
    assert "airnet" in available_models() and "seed" in available_models()


def test_unknown_model_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet9'"):
        build_model("resnet9")


def test_pool_first_pools_before_the_groups_first_convolution() -> None:
    torch.manual_seed(0)
    sizes: dict[tuple[bool, ...], list[int]] = {}
    for flags in ((False, False, False), (False, True, True)):
        model = build_model("airnet", widths=[8, 16, 16], pool_first=list(flags)).eval()
        sizes[flags] = []
        for group in model.groups:
            group.conv1.register_forward_hook(
                lambda _module, _inputs, output, seen=sizes[flags]: seen.append(output.shape[-1])
            )
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # The stem leaves 31x31; each group halves it once, before or after its first convolution.
    assert sizes[(False, False, False)] == [31, 15, 7]
    assert sizes[(False, True, True)] == [31, 7, 3]
    with pytest.raises(ValueError, match="pool_first must be 3 booleans"):
        build_model("airnet", pool_first=[True, True])


def test_the_size_menu_spans_at_least_4x_in_flops_and_fixes_the_widths() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    flops = {}
    for name in AIRNET_SIZES:
        model = build_model(name, num_classes=10).eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, 32, 32))
        flops[name] = counter.get_total_flops()
    assert flops["airnet-s"] < flops["airnet-m"] < flops["airnet-l"]
    assert flops["airnet-l"] >= 4 * flops["airnet-s"]
    # The default recipe's net is the menu's middle size: the same parameters, shape for shape.
    default = build_model(DEFAULT.model, **DEFAULT.model_kwargs).state_dict()
    middle = build_model("airnet-m").state_dict()
    assert {k: v.shape for k, v in default.items()} == {k: v.shape for k, v in middle.items()}
    with pytest.raises(ArchitectureError, match="airnet-s takes no argument 'widths'"):
        build_model("airnet-s", widths=[8, 8, 8])
