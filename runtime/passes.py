"""Forward passes per image of each test-time augmentation mode, and how many a model file runs."""

from __future__ import annotations

from typing import Any

# Mode -> network passes per image: the mirror image doubles it; flip + shift adds two shifted flipped pairs.
TTA_PASSES: dict[str, int] = {"none": 1, "flip": 2, "flip_shift": 6}


def passes_per_image(provenance: dict[str, Any] | None) -> int | None:
    """The passes a model file runs per image, from its provenance's TTA mode; None when it does not say."""
    if not isinstance(provenance, dict):
        return None
    return TTA_PASSES.get(provenance.get("tta") or "none") if "tta" in provenance else None


def describe_passes(provenance: dict[str, Any] | None) -> str:
    """'1 pass (no TTA)', '6 passes (flip_shift TTA)' or 'unknown (no provenance)', for reports."""
    passes = passes_per_image(provenance)
    if passes is None:
        return "unknown (the file records no TTA mode)"
    mode = provenance["tta"] or "none"
    return f"{passes} pass{'es' if passes > 1 else ''} ({'no' if mode == 'none' else mode} TTA)"
