"""What classification returns: a typed prediction per input, or a typed failure naming the input and reason; and
how a model's scores become them (softmax in float64, the k best classes, non-finite scores refused).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cifar_edge.runtime.contract import Contract

NOT_FINITE = "the model's scores are not finite (NaN or infinity)"


@dataclass(frozen=True)
class ClassScore:
    label: str
    index: int
    probability: float


@dataclass(frozen=True)
class Prediction:
    # Where the input came from: the file path, or "<PIL image N>" / "<array N>" for in-memory inputs.
    source: str
    label: str
    index: int
    probability: float
    # The k most probable classes, most probable first (top_k[0] is the prediction itself).
    top_k: tuple[ClassScore, ...]

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` record: path, label, index, probability, top_k [{label, probability}]."""
        return {
            "path": self.source,
            "label": self.label,
            "index": self.index,
            "probability": self.probability,
            "top_k": [{"label": score.label, "probability": score.probability} for score in self.top_k],
        }


@dataclass(frozen=True)
class Failure:
    """An input that could not be classified; ``str()`` is one line: ``<source>: <reason>``."""

    source: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.source, "error": self.reason}

    def __str__(self) -> str:
        # File names may contain newlines; keep the report to one line per input.
        return f"{self.source}: {self.reason}".replace("\r", "\\r").replace("\n", "\\n")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, stable for any finite logits (the row maximum is subtracted first)."""
    values = np.asarray(logits, dtype=np.float64)
    shifted = values - values.max(axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return np.asarray(exponentials / exponentials.sum(axis=-1, keepdims=True))


def probabilities(scores: np.ndarray, output_kind: str) -> np.ndarray:
    """float64 class probabilities from a model's (N, classes) scores: softmax of logits, probabilities as they are."""
    return softmax(scores) if output_kind == "logits" else np.asarray(scores, dtype=np.float64)


def top_k_predictions(
    probabilities: np.ndarray, sources: Sequence[str], class_names: tuple[str, ...], k: int
) -> list[Prediction]:
    """Turn (N, classes) probabilities into Predictions with the ``k`` best classes each."""
    k = max(1, min(k, len(class_names)))
    # Stable sort on the negated probabilities: ties keep class order, so results are deterministic.
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    predictions = []
    for row, source, best in zip(probabilities, sources, order, strict=True):
        scores = tuple(ClassScore(class_names[i], int(i), float(row[i])) for i in best)
        top = scores[0]
        predictions.append(Prediction(source, top.label, top.index, top.probability, scores))
    return predictions


def predictions_from_scores(
    scores: np.ndarray, sources: Sequence[str], contract: Contract, *, top_k: int
) -> list[Prediction | Failure]:
    """A model's (N, classes) scores for the inputs named ``sources`` -> one Prediction per row, in order.

    A row with a NaN or infinite score is a Failure in its place: it is never reported as a number.
    """
    finite = np.isfinite(scores).all(axis=1)
    kept = scores[finite]
    kept_sources = [source for source, ok in zip(sources, finite, strict=True) if ok]
    probable = probabilities(kept, contract.output_kind)
    ranked = iter(top_k_predictions(probable, kept_sources, contract.class_names, top_k))
    return [next(ranked) if ok else Failure(source, NOT_FINITE) for source, ok in zip(sources, finite, strict=True)]
