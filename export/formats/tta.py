"""Test-time augmentation baked into the exported graph, when the run record asks for it.

A recipe may evaluate with test-time augmentation (``record["architecture"]["tta"]``: "flip" or "flip_shift", see
:mod:`cifar_edge.train.tta`). The export then wraps the network in the same module training evaluated with, so
every artifact computes the same averaged logits, and the parity gate compares against that wrapped module: the
runtime needs no knowledge of TTA at all.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cifar_edge.export.errors import ExportUsageError
from cifar_edge.train.recipes import TTA_MODES
from cifar_edge.train.tta import with_tta


def tta_mode(record: dict[str, Any], requested: str | None = None) -> str:
    """``requested`` (an export option) or else the TTA the run record names ("none" when absent);
    ExportUsageError for values we do not know."""
    if requested is not None:
        if requested not in TTA_MODES:
            raise ExportUsageError(f"--tta {requested!r} is not one of {', '.join(TTA_MODES)}")
        return requested
    architecture = record.get("architecture") or {}
    mode = architecture.get("tta") or "none"
    if mode not in TTA_MODES:
        raise ExportUsageError(f"run.json: architecture.tta={mode!r} is not one of {', '.join(TTA_MODES)}")
    return mode


def module_for_export(model: nn.Module, record: dict[str, Any], requested: str | None = None) -> nn.Module:
    """The eval-mode module whose function every artifact must reproduce (the network, plus TTA if requested)."""
    return with_tta(model.eval(), tta_mode(record, requested)).eval()
