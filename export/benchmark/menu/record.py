"""One row of ``cifar-bench``'s menu (several run folders): what a run costs and scores, as menu.json records it.

Every field carries its description in its annotation (menu.json's ``fields``), so the file explains itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, get_type_hints

from cifar_edge.runtime.passes import TTA_PASSES


@dataclass
class MenuRow:
    run_dir: Annotated[str, "the run folder, as given on the command line"]
    run_name: Annotated[str, "the run folder's name"]
    status: Annotated[str, '"ok", or "failed": reason says why (what was measured before the failure is kept)'] = "ok"
    reason: Annotated[str | None, "why the row failed, one line"] = None
    model: Annotated[str | None, "model name and size: run.json architecture name and widths"] = None
    architecture: Annotated[str | None, "run.json architecture.name"] = None
    widths: Annotated[list[int] | None, "architecture.kwargs.widths, or a sized name's (null: none known)"] = None
    parameters: Annotated[int | None, "parameters of the network, frozen ones included"] = None
    run_tta: Annotated[str | None, "the TTA the run's record names (what cifar-export bakes in by default)"] = None
    images: Annotated[int | None, "eval images every accuracy of the row is measured on"] = None
    mflop_per_image: Annotated[float | None, "MFLOP per image at one pass, counted from the fp32 ONNX graph"] = None
    accuracy_1pass: Annotated[float | None, "% top-1 of the fp32 ONNX model at one pass (no TTA)"] = None
    accuracy_flip: Annotated[
        float | None, f"% top-1 of the PyTorch model with flip TTA ({TTA_PASSES['flip']} passes)"
    ] = None
    accuracy_flip_shift: Annotated[
        float | None, f"% top-1 of the PyTorch model with flip_shift TTA ({TTA_PASSES['flip_shift']} passes)"
    ] = None
    int8_accuracy_1pass: Annotated[float | None, "% top-1 of the int8 ONNX model at one pass"] = None
    passes_per_image: Annotated[int, "forward passes per image of the timed models (the speed fields)"] = 1
    fp32_images_per_second: Annotated[float | None, "fp32 ONNX images/s at settings.batch_size, onnxruntime CPU"] = None
    fp32_latency_ms: Annotated[float | None, "fp32 ONNX median ms per call at batch 1, onnxruntime CPU"] = None
    int8_images_per_second: Annotated[float | None, "int8 ONNX images/s at settings.batch_size, onnxruntime CPU"] = None
    int8_latency_ms: Annotated[float | None, "int8 ONNX median ms per call at batch 1, onnxruntime CPU"] = None
    files: Annotated[dict[str, str], "the one-pass ONNX files measured, by precision"] = field(default_factory=dict)
    notes: Annotated[list[str], "how the files were obtained (reused, exported now) and other remarks"] = field(
        default_factory=list
    )

    def fail(self, reason: str) -> None:
        """Mark the row failed; the first reason is the row's, later ones become notes."""
        if self.status == "failed":
            self.notes.append(reason)
            return
        self.status, self.reason = "failed", reason

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The accuracies measured through PyTorch with TTA, by mode (the one-pass one comes from the fp32 ONNX file).
TTA_ACCURACY_FIELDS = {"flip": "accuracy_flip", "flip_shift": "accuracy_flip_shift"}
# The timed fields of each precision: (images/s at the batch size, ms at batch 1), and the accuracy field.
SPEED_FIELDS = {
    "fp32": ("fp32_images_per_second", "fp32_latency_ms", "accuracy_1pass"),
    "int8": ("int8_images_per_second", "int8_latency_ms", "int8_accuracy_1pass"),
}


def field_docs() -> dict[str, str]:
    """menu.json's ``fields``: every record field and what it holds."""
    hints = get_type_hints(MenuRow, include_extras=True)
    return {name: hint.__metadata__[0] for name, hint in hints.items()}
