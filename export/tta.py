"""Test-time augmentation baked into the exported graph, when the run record asks for it.

A recipe may evaluate with horizontal-flip TTA (``record["architecture"]["tta"] == "flip"``). The export then wraps
the network so that every artifact computes the same averaged logits, and the parity gate compares against the
same wrapped module: the runtime needs no knowledge of TTA at all.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cifar_edge.export.errors import ExportUsageError

TTA_MODES = ("none", "flip")


class FlipAverage(nn.Module):
    """Average the logits of the image and its mirror image (flip along the width axis of NCHW input)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Two calls rather than one on torch.cat([x, flip(x)]): splitting the doubled batch again made torch.export
        # specialise the batch axis to the example's size, which the parity gate caught.
        return (self.model(x) + self.model(x.flip(-1))) * 0.5


def tta_mode(record: dict[str, Any]) -> str:
    """The TTA the run record requests ("none" when absent); ExportUsageError for values we do not know."""
    architecture = record.get("architecture") or {}
    mode = architecture.get("tta") or "none"
    if mode not in TTA_MODES:
        raise ExportUsageError(f"run.json: architecture.tta={mode!r} is not one of {', '.join(TTA_MODES)}")
    return mode


def module_for_export(model: nn.Module, record: dict[str, Any]) -> nn.Module:
    """The eval-mode module whose function every artifact must reproduce (the network, plus TTA if requested)."""
    model.eval()
    if tta_mode(record) == "flip":
        return FlipAverage(model).eval()
    return model
