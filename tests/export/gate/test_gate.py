"""The parity gate catches broken exports, and a failed gate leaves nothing under the final name."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from export_helpers import copy_run

from cifar_edge.export import ExportConfig, Thresholds
from cifar_edge.export.destinations import Target
from cifar_edge.export.gate.checks import Comparison
from cifar_edge.export.gate.parity import _precision_checks
from cifar_edge.export.pipeline import export_artifact, prepare_export

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def gate_context(trained_run_dir: Path, labelled_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    run_dir = copy_run(trained_run_dir, tmp_path_factory.mktemp("gate_run"))
    return prepare_export(run_dir, ExportConfig(data=labelled_data_dir))


def _no_temporaries(folder: Path) -> bool:
    return not [path for path in folder.iterdir() if path.name.endswith(".tmp")]


def _perturbed(module: torch.nn.Module) -> torch.nn.Module:
    broken = copy.deepcopy(module)
    with torch.no_grad():
        weight = broken.groups[1].conv1.weight
        weight.add_(0.05 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    return broken


def _left_in_train_mode(module: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(module).train()  # BatchNorm then normalises with each batch's own statistics


@pytest.mark.parametrize(
    ("artifact_format", "breakage"),
    [("onnx", _perturbed), ("torchscript", _left_in_train_mode)],
    ids=["onnx-perturbed-weight", "torchscript-train-mode"],
)
def test_gate_rejects_broken_export_and_writes_nothing(gate_context, tmp_path: Path, artifact_format, breakage) -> None:
    final = tmp_path / f"broken.{artifact_format}"
    result = export_artifact(gate_context, Target(artifact_format, "fp32", final), module=breakage(gate_context.module))
    assert not result.written and result.report is not None and not result.report.passed
    failures = result.report.failures()
    assert any("max |logit diff|" in failure and "FAILED by" in failure for failure in failures), failures
    assert not final.exists() and not final.with_name(final.name + ".parity.json").exists()
    assert _no_temporaries(tmp_path)


def test_failed_gate_keeps_the_previous_good_artifact(gate_context, tmp_path: Path) -> None:
    final = tmp_path / "model.onnx"
    good = export_artifact(gate_context, Target("onnx", "fp32", final))
    assert good.written
    before = final.read_bytes()
    bad = export_artifact(gate_context, Target("onnx", "fp32", final), module=_perturbed(gate_context.module))
    assert not bad.written
    assert final.read_bytes() == before  # untouched: the broken export never replaced it
    assert _no_temporaries(tmp_path)


def _comparison(agreement: float, reference_accuracy: float | None, artifact_accuracy: float | None) -> Comparison:
    return Comparison("real images", 1000, 0.5, 0.1, agreement, reference_accuracy, artifact_accuracy)


def test_int8_threshold_is_accuracy_drop_in_points() -> None:
    limits = Thresholds()
    (ok,) = _precision_checks("int8", {"real images": _comparison(0.9, 90.0, 89.1)}, limits)
    (bad,) = _precision_checks("int8", {"real images": _comparison(0.99, 90.0, 88.9)}, limits)
    assert ok.passed and not bad.passed
    assert np.isclose(bad.measured, 1.1) and "FAILED by 0.1" in bad.describe()
    (unlabelled,) = _precision_checks("int8", {"real images": _comparison(1.0, None, None)}, limits)
    assert not unlabelled.passed


def test_fp16_threshold_is_agreement_and_overridable() -> None:
    (ok,) = _precision_checks("fp16", {"real images": _comparison(0.996, 90.0, 90.0)}, Thresholds())
    (bad,) = _precision_checks("fp16", {"real images": _comparison(0.994, 90.0, 90.0)}, Thresholds())
    relaxed_limits = Thresholds(fp16_min_agreement=0.99)
    (relaxed,) = _precision_checks("fp16", {"real images": _comparison(0.994, 90.0, 90.0)}, relaxed_limits)
    assert ok.passed and not bad.passed and relaxed.passed


def test_fp32_needs_both_small_differences_and_full_agreement() -> None:
    checks = _precision_checks("fp32", {"real images": _comparison(1.0, 90.0, 90.0)}, Thresholds())
    assert [check.passed for check in checks] == [False, True]  # max diff 0.5 > 1e-4, agreement 100%
    checks = _precision_checks("fp32", {"real images": _comparison(1.0, 90.0, 90.0)}, Thresholds(fp32_max_abs_diff=1.0))
    assert all(check.passed for check in checks)
