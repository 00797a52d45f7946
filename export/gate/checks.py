"""The gate's measurements and verdicts: a comparison of two sets of scores, and a check against a threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Comparison:
    name: str
    inputs: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float  # fraction in [0, 1]
    reference_accuracy: float | None = None  # percent
    artifact_accuracy: float | None = None  # percent


def compare(name: str, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None) -> Comparison:
    difference = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    reference_top1, candidate_top1 = reference.argmax(axis=1), candidate.argmax(axis=1)

    def accuracy(top1: np.ndarray) -> float | None:
        # count * 100 / n keeps round numbers round (404 of 1000 is 40.4, not 40.400000000000006)
        return None if labels is None else 100.0 * int(np.count_nonzero(top1 == labels)) / len(labels)

    return Comparison(
        name=name,
        inputs=len(reference),
        max_abs_diff=float(difference.max()) if difference.size else 0.0,
        mean_abs_diff=float(difference.mean()) if difference.size else 0.0,
        top1_agreement=float(np.mean(reference_top1 == candidate_top1)) if len(reference) else 1.0,
        reference_accuracy=accuracy(reference_top1),
        artifact_accuracy=accuracy(candidate_top1),
    )


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    measured: float | None = None
    threshold: float | None = None
    # "<=" or ">=": how measured must relate to threshold; "" for yes/no checks.
    relation: str = ""
    detail: str = ""

    def describe(self) -> str:
        if self.relation and self.measured is not None and self.threshold is not None:
            verdict = "ok" if self.passed else f"FAILED by {abs(self.measured - self.threshold):.3g}"
            text = f"{self.name}: {self.measured:.6g} (needs {self.relation} {self.threshold:.6g}) {verdict}"
        else:
            text = f"{self.name}: {'ok' if self.passed else 'FAILED'}"
        return f"{text} ({self.detail})" if self.detail else text


def bounded(name: str, measured: float, relation: str, threshold: float, detail: str = "") -> Check:
    passed = measured <= threshold if relation == "<=" else measured >= threshold
    return Check(name, bool(passed), measured, threshold, relation=relation, detail=detail)


def finite_or_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value
