"""Torch-free evaluation core: run a model over a labelled image set and measure it. ``cifar-eval``
(``export/evaluate/``) drives it for every model kind; it lives in the runtime so that an ONNX model is measured on
an edge device without torch.

A model is either a runtime :class:`~cifar_edge.runtime.classifier.Classifier` or any function from a batch in the
contract's input form to (N, classes) scores: float32 NCHW already normalised by the contract for the float form,
uint8 NHWC pixels at the contract size for the pixel form; PyTorch, TorchScript and onnxruntime callers all fit
the second. The result is a JSON-serialisable report (docs/evaluation.md, "eval.json"):
top-1 and top-k accuracy, per-class accuracy, the confusion matrix (rows: true class, columns: predicted class),
the most confused class pairs and the misclassified images, most confident mistakes first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cifar_edge.runtime.classifier import Classifier
from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.labelled import LabelledImages
from cifar_edge.runtime.model_file import passes_per_image
from cifar_edge.runtime.predictions import Failure, probabilities
from cifar_edge.runtime.preprocess import ModelInput

EVAL_SCHEMA_VERSION = 1
# The k of "top-k accuracy" (capped at the number of classes).
TOP_K = 5
# How many class pairs "most confused" lists, and how many mistakes eval.json keeps (most confident first).
MOST_CONFUSED = 10
MAX_MISCLASSIFIED_LISTED = 1000
# Skipped (undecodable) files listed by name in eval.json; the count is always complete.
MAX_SKIPPED_LISTED = 100

Predictor = Callable[[np.ndarray], np.ndarray]
"""The contract's model input (float32 (N, 3, H, W) normalised, or for the pixel form uint8 (N, H, W, 3)) ->
(N, classes) logits (or probabilities, per the contract)."""


@dataclass
class ModelOutputs:
    """What one pass over the data produced: scores for every image that decoded, and the ones that did not."""

    scores: np.ndarray  # float (n, classes), in the order of ``indices``
    indices: np.ndarray  # int64 (n,): positions in the data set
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return len(self.indices) / self.seconds if self.seconds > 0 else 0.0


def batch_scorer(model: Classifier | Predictor, contract: Contract) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 (N, H, W, 3) -> scores, for a Classifier or a predict function of the contract's input form."""
    if isinstance(model, Classifier):  # it makes its own input (and casts to its input type)
        return model.logits
    if not callable(model):
        raise TypeError(f"expected a Classifier or a predict function, got {type(model).__name__}")
    model_input = ModelInput(contract)
    return lambda images: np.asarray(model(model_input.from_pixels(images)))


def score_images(
    model: Classifier | Predictor,
    data: LabelledImages,
    contract: Contract,
    *,
    batch_size: int = 256,
    on_progress: Callable[[int], None] | None = None,
) -> ModelOutputs:
    """Score every image of ``data``; undecodable files become Failures. ``on_progress(n)`` after each batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    score = batch_scorer(model, contract)
    scores: list[np.ndarray] = []
    indices: list[np.ndarray] = []
    failures: list[Failure] = []
    started = time.perf_counter()
    for batch in data.batches(batch_size):
        failures.extend(failure for _, failure in batch.failures)
        if len(batch.indices):
            output = np.asarray(score(batch.images), dtype=np.float32)
            if output.shape != (len(batch.indices), contract.num_classes):
                raise ValueError(
                    f"model returned scores of shape {output.shape}, expected ({len(batch.indices)}, "
                    f"{contract.num_classes})"
                )
            if not np.isfinite(output).all():
                bad = int(np.count_nonzero(~np.isfinite(output).all(axis=1)))
                raise ValueError(
                    f"the model's scores are not finite (NaN or infinity) for {bad} of {len(output)} images"
                )
            scores.append(output)
            indices.append(batch.indices)
        if on_progress is not None:
            on_progress(len(batch.indices) + len(batch.failures))
    seconds = time.perf_counter() - started
    classes = contract.num_classes
    return ModelOutputs(
        scores=np.concatenate(scores) if scores else np.zeros((0, classes), dtype=np.float32),
        indices=np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64),
        failures=failures,
        seconds=seconds,
    )


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 (classes, classes): entry [t, p] counts images of true class t predicted as p."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def compute_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    *,
    output_kind: str = "logits",
    sources: list[str] | None = None,
    indices: np.ndarray | None = None,
    top_k: int = TOP_K,
    max_misclassified: int = MAX_MISCLASSIFIED_LISTED,
) -> dict[str, Any]:
    """Accuracy, per-class accuracy, confusion matrix, most confused pairs and mistakes, as plain JSON values.

    ``scores`` (n, classes) and ``labels`` (n,) are aligned; ``indices`` (n,) are the images' positions in the
    data set (default 0..n-1) and ``sources`` (indexed by position) name them.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels, dtype=np.int64)
    count, classes = len(labels), len(class_names)
    if scores.shape != (count, classes):
        raise ValueError(f"scores have shape {scores.shape}, expected ({count}, {classes})")
    indices = np.arange(count) if indices is None else np.asarray(indices, dtype=np.int64)
    k = max(1, min(top_k, classes))
    chances = probabilities(scores, output_kind) if count else np.zeros((0, classes))
    # Stable order on negated probabilities: ties go to the lower class index, as in the runtime's predictions.
    ranking = np.argsort(-chances, axis=1, kind="stable") if count else np.zeros((0, classes), dtype=np.int64)
    predicted = ranking[:, 0] if count else np.zeros(0, dtype=np.int64)
    correct = predicted == labels
    in_top_k = (ranking[:, :k] == labels[:, None]).any(axis=1) if count else np.zeros(0, dtype=bool)
    matrix = confusion_matrix(labels, predicted, classes)
    per_class = []
    scored: list[float] = []  # the accuracies of the classes that have images
    for index, name in enumerate(class_names):
        total = int(matrix[index].sum())
        hits = int(matrix[index, index])
        accuracy = hits / total if total else None
        per_class.append({"class": name, "index": index, "images": total, "correct": hits, "accuracy": accuracy})
        scored += [accuracy] if accuracy is not None else []
    return {
        "images": count,
        "top1_accuracy": float(correct.mean()) if count else None,
        "top5_accuracy": float(in_top_k.mean()) if count else None,
        "top5_k": k,
        "mean_class_accuracy": float(np.mean(scored)) if scored else None,
        "correct": int(correct.sum()),
        "per_class": per_class,
        "confusion_matrix": {"rows": "true class", "columns": "predicted class", "counts": matrix.tolist()},
        "most_confused": most_confused_pairs(matrix, class_names),
        "misclassified_total": int((~correct).sum()),
        "misclassified": _mistakes(
            chances,
            labels,
            predicted,
            class_names=class_names,
            indices=indices,
            sources=sources,
            limit=max_misclassified,
        ),
    }


def most_confused_pairs(
    matrix: np.ndarray, class_names: tuple[str, ...], limit: int = MOST_CONFUSED
) -> list[dict[str, Any]]:
    """Off-diagonal cells with the most images, largest first (ties: lower true, then predicted index first)."""
    pairs = []
    for true_index, predicted_index in zip(*np.nonzero(matrix), strict=True):
        if true_index != predicted_index:
            pairs.append((-int(matrix[true_index, predicted_index]), int(true_index), int(predicted_index)))
    pairs.sort()
    rows = []
    for negative_count, true_index, predicted_index in pairs[:limit]:
        true_total = int(matrix[true_index].sum())
        rows.append(
            {
                "true": class_names[true_index],
                "predicted": class_names[predicted_index],
                "count": -negative_count,
                "share_of_true_class": -negative_count / true_total if true_total else None,
            }
        )
    return rows


def _mistakes(
    probabilities: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    *,
    class_names: tuple[str, ...],
    indices: np.ndarray,
    sources: list[str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]] if len(wrong) else np.zeros(0)
    order = wrong[np.argsort(-confidence, kind="stable")][:limit]
    return [
        {
            "index": int(indices[row]),
            "source": sources[int(indices[row])] if sources is not None else str(int(indices[row])),
            "true": class_names[int(labels[row])],
            "predicted": class_names[int(predicted[row])],
            "confidence": float(probabilities[row, predicted[row]]),
            "true_class_probability": float(probabilities[row, labels[row]]),
        }
        for row in order
    ]


def evaluation_report(
    outputs: ModelOutputs,
    data: LabelledImages,
    contract: Contract,
    *,
    model_info: dict[str, Any] | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """The eval.json document for one pass of a model over ``data``."""
    labels = data.labels[outputs.indices]
    metrics = compute_metrics(
        outputs.scores,
        labels,
        contract.class_names,
        output_kind=contract.output_kind,
        sources=data.sources,
        indices=outputs.indices,
    )
    return {
        "schema_version": EVAL_SCHEMA_VERSION,
        "kind": "cifar-edge evaluation",
        "model": model_info or {},
        # "float" (normalised float32 NCHW in) or "pixels" (uint8 NHWC in, preprocessing in the graph).
        "input_form": contract.input_form,
        "data": data.description,
        "class_names": list(contract.class_names),
        "images_total": len(data),
        "images_skipped": len(outputs.failures),
        "skipped": [failure.to_dict() for failure in outputs.failures[:MAX_SKIPPED_LISTED]],
        **metrics,
        "timing": {
            "seconds": round(outputs.seconds, 4),
            "images_per_second": round(outputs.images_per_second, 1),
            "batch_size": batch_size,
            "note": "end to end: decoding, preprocessing and the model",
        },
    }


def evaluate(
    model: Classifier | Predictor,
    data: LabelledImages,
    contract: Contract,
    *,
    batch_size: int = 256,
    model_info: dict[str, Any] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run ``model`` (Classifier or predict function) over ``data`` and return the eval.json report."""
    if isinstance(model, Classifier) and "passes_per_image" not in (model_info or {}):  # its provenance says how many
        model_info = {**(model_info or {}), "passes_per_image": passes_per_image(model.provenance)}
    outputs = score_images(model, data, contract, batch_size=batch_size, on_progress=on_progress)
    return evaluation_report(outputs, data, contract, model_info=model_info, batch_size=batch_size)
