"""Test-time augmentation: the modules that average a network's logits over transformed copies of each image.

Training evaluates through these modules and the export wraps the network in the same one (``module_for_export``,
when the run record or ``--tta`` asks for it), so the validation accuracy in run.json is the accuracy the exported
graph computes, every artifact computes the same averaged logits, and the runtime needs no knowledge of TTA.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cifar_edge.train.recipes import TTA_MODES

# The augmented views the last epoch scores besides the bare network, so the run says what each export choice buys.
VIEWS = tuple(mode for mode in TTA_MODES if mode != "none")


class FlipAverage(nn.Module):
    """Average the logits of the image and its mirror image (flip along the width axis of NCHW input)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Two calls rather than one on torch.cat([x, flip(x)]): splitting the doubled batch again made torch.export
        # specialise the batch axis to the example's size, which the parity gate caught.
        averaged: torch.Tensor = (self.model(x) + self.model(x.flip(-1))) * 0.5
        return averaged


class FlipShiftAverage(nn.Module):
    """Flip averaging of the image (weight 1/2) and of two copies shifted by one pixel, up-left and down-right,
    with reflected borders (1/4 each): six forward passes. The shifts match the crop augmentation's translations,
    so the network has seen such views in training; it adds a few tenths of a percent over flip alone."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.flip_average = FlipAverage(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        # Slicing by offsets from both ends (not by the image size) keeps the exported graph free of shape arithmetic.
        up_left, down_right = padded[:, :, :-2, :-2], padded[:, :, 2:, 2:]
        shifted = self.flip_average(up_left) + self.flip_average(down_right)
        averaged: torch.Tensor = self.flip_average(x) * 0.5 + shifted * 0.25
        return averaged


def with_tta(model: nn.Module, mode: str) -> nn.Module:
    """``model`` wrapped for test-time augmentation ``mode`` (one of recipes.TTA_MODES); "none" returns it as is."""
    if mode == "flip":
        return FlipAverage(model)
    if mode == "flip_shift":
        return FlipShiftAverage(model)
    if mode == "none":
        return model
    raise ValueError(f"tta must be one of {TTA_MODES}, got {mode!r}")


def tta_mode(record: dict[str, Any], requested: str | None = None) -> str:
    """``requested`` (an export option) or else the TTA the run record names ("none" when absent); ValueError for
    values we do not know."""
    if requested is not None:
        if requested not in TTA_MODES:
            raise ValueError(f"--tta {requested!r} is not one of {', '.join(TTA_MODES)}")
        return requested
    mode = (record.get("architecture") or {}).get("tta") or "none"
    if mode not in TTA_MODES:
        raise ValueError(f"run.json: architecture.tta={mode!r} is not one of {', '.join(TTA_MODES)}")
    return mode


def module_for_export(model: nn.Module, record: dict[str, Any], requested: str | None = None) -> nn.Module:
    """The eval-mode module whose function every artifact must reproduce (the network, plus TTA if requested)."""
    return with_tta(model.eval(), tta_mode(record, requested)).eval()
