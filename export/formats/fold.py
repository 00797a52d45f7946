"""The inference form every artifact is exported from: each BatchNorm folded into the convolution before it.

A folded convolution is one op instead of three (Conv, BatchNormalization, the reorders around it), and int8
quantization needs it: a BatchNormalization between a convolution and its activation keeps that convolution in
float. AirNet's first BatchNorm of a group follows a max pool; its per-channel scale is positive (the scale-free
BatchNorm's weight is 1), and a positive per-channel affine map commutes with max pooling, so it folds into the
convolution before the pool. The parity gate still compares every artifact against the unfolded model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from cifar_edge.train.models import ConvGroup


def fold_conv_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[nn.Conv2d, torch.Tensor]:
    """A convolution computing ``norm(conv(x))`` in eval mode, and the per-channel scale it applied."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    folded = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    )
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    with torch.no_grad():
        folded.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        folded.bias.copy_((bias - norm.running_mean) * scale + norm.bias)
    return folded, scale


class FoldedConvGroup(nn.Module):
    """A ConvGroup with both BatchNorms folded: conv > pool > act > conv > act (or pool first, as the group was)."""

    def __init__(self, group: ConvGroup) -> None:
        super().__init__()
        self.pool_first = group.pool_first
        self.conv1, _ = fold_conv_norm(group.conv1, group.norm1)
        self.conv2, _ = fold_conv_norm(group.conv2, group.norm2)
        self.pool = group.pool
        self.activation = group.activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.pool(x)) if self.pool_first else self.pool(self.conv1(x))
        return self.activation(self.conv2(self.activation(x)))


def foldable(group: ConvGroup) -> bool:
    """Folding norm1 across the pool is exact only for a positive scale (always so for the scale-free BatchNorm)."""
    if group.pool_first:
        return True
    scale = group.norm1.weight / torch.sqrt(group.norm1.running_var + group.norm1.eps)
    return bool((scale > 0).all())


def inference_form(module: nn.Module) -> nn.Module:
    """An eval-mode copy of ``module`` with every foldable ConvGroup folded; other modules are kept as they are."""
    folded = copy.deepcopy(module).eval()
    for parent in list(folded.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ConvGroup) and foldable(child):
                setattr(parent, name, FoldedConvGroup(child).eval())
    return folded
