"""The parity gate on a pixel-form file: raw pixels at other sizes against the training-time preprocessing, and the
graph's own Resize against Pillow's, which fails when the Resize is set up differently."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from export_helpers import SHARED_CAT_PHOTO, copy_run
from onnx import helper

from cifar_edge.export import ExportConfig
from cifar_edge.export.destinations import Target
from cifar_edge.export.formats import row_of
from cifar_edge.export.gate.parity import run_gate
from cifar_edge.export.gate.pixels import OTHER_SIZES, OWN_SIZES, RESIZE_CHECK, resize_check
from cifar_edge.export.pipeline import export_artifact, prepare_export

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_the_parity_report_covers_the_pixel_form(exported_all) -> None:
    report = json.loads((exported_all.run_dir / "model.onnx.parity.json").read_text())
    assert report["passed"]
    (resize,) = [check for check in report["checks"] if check["name"] == RESIZE_CHECK]
    assert resize["passed"] and resize["measured"] <= resize["threshold"] == 1
    assert all(size in resize["detail"] for size in ("48x64", "100x30", "31x33", "451x300", "32x32: 0"))
    (backend,) = report["backends"]
    comparisons = {comparison["name"]: comparison for comparison in backend["comparisons"]}
    sized = comparisons[f"{OTHER_SIZES} (vs PyTorch)"]
    assert sized["inputs"] == 4 * 32 and sized["top1_agreement"] == 1.0  # 32 images x 4 sizes
    assert sized["reference_accuracy"] == sized["artifact_accuracy"]
    assert comparisons[f"{OWN_SIZES} (vs PyTorch)"]["inputs"] == 4  # the data set's sample files
    names = [check["name"] for check in backend["checks"]]
    assert f"top-1 agreement on {OTHER_SIZES} (vs PyTorch)" in names


@pytest.fixture(scope="module")
def pixel_gate(trained_run_dir: Path, labelled_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The gate's inputs (with the shared cat photo where this checkout has it), and a pixel-form model.onnx that
    passed the gate, with its result."""
    run_dir = copy_run(trained_run_dir, tmp_path_factory.mktemp("pixel_gate"))
    photos = (SHARED_CAT_PHOTO,) if SHARED_CAT_PHOTO.is_file() else ()
    config = ExportConfig(data=labelled_data_dir, verify_images=30, preprocess_files=photos)
    context = prepare_export(run_dir, config)
    result = export_artifact(context, Target("onnx", "fp32", run_dir / "model.onnx"))
    assert result.written
    return context, result


def test_a_photo_goes_through_the_file_at_its_own_size(pixel_gate) -> None:
    context, result = pixel_gate
    if not context.config.preprocess_files:
        pytest.skip(f"no photo at {SHARED_CAT_PHOTO}")
    (own_sizes,) = [sized for sized in context.gate_inputs.pixels.sets if sized.name == OWN_SIZES]
    assert (1, 300, 451, 3) in [group.shape for group in own_sizes.groups]  # the cat, 451 wide, 300 high
    checks = {check.name: check for _, check in result.report.all_checks()}
    assert "300x451: 0" in checks[RESIZE_CHECK].detail  # the graph resizes the photo exactly as Pillow does
    assert checks[f"top-1 agreement on {OWN_SIZES} (vs PyTorch)"].passed


# onnxruntime refuses exclude_outside=1 without antialias, so the plain resize turns both off (as
# onnxruntime-extensions emits it). Pillow differs from it by up to about 100 LSB, from exclude_outside=0 by a few.
BROKEN_RESIZES = [
    {"antialias": 0, "exclude_outside": 0},
    {"exclude_outside": 0},
    {"coordinate_transformation_mode": "asymmetric"},
]


@pytest.mark.parametrize("changes", BROKEN_RESIZES, ids=["no-antialias", "include-outside", "asymmetric"])
def test_the_resize_check_fails_on_a_resize_set_up_otherwise(pixel_gate, tmp_path: Path, changes: dict) -> None:
    context, result = pixel_gate
    good = result.path
    assert resize_check(good, context.gate_inputs.pixels, max_lsb=1).passed
    model = onnx.load(str(good))
    (resize,) = [node for node in model.graph.node if node.op_type == "Resize"]
    kept = [item for item in resize.attribute if item.name not in changes]
    del resize.attribute[:]
    resize.attribute.extend([*kept, *(helper.make_attribute(name, value) for name, value in changes.items())])
    broken = tmp_path / "model.onnx"
    onnx.save(model, str(broken))
    check = resize_check(broken, context.gate_inputs.pixels, max_lsb=1)
    assert not check.passed and (check.measured or 0) > 1, check.describe()
    contract = context.run.contract.pixel_form()
    report = run_gate(row_of("onnx"), broken, contract, context.gate_inputs, thresholds=context.config.thresholds)
    assert not report.passed
    assert any(failure.startswith(RESIZE_CHECK) for failure in report.failures()), report.failures()
