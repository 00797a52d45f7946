"""A run record can request flip or flip+shift TTA; the exported graph then contains it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from export_helpers import copy_run

from cifar_edge.export import ExportConfig, ExportUsageError, FlipAverage, export_run
from cifar_edge.train.models import build_model
from cifar_edge.train.run_folder import load_run
from cifar_edge.train.tta import module_for_export, with_tta

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_flip_average_is_the_mean_of_both_views() -> None:
    torch.manual_seed(0)
    model = build_model("airnet", num_classes=3, widths=[8, 16, 16]).eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.inference_mode():
        expected = (model(x) + model(x.flip(-1))) / 2
        wrapped = FlipAverage(model)(x)
        assert torch.allclose(wrapped, expected, atol=1e-6)
        assert torch.allclose(FlipAverage(model)(x.flip(-1)), wrapped, atol=1e-6)  # mirror-invariant


def test_flip_shift_average_weights_six_views_of_the_reflect_padded_image() -> None:
    """Through a model that returns its input's pixels, the output is the weighted mean of the views themselves."""
    x = torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).reshape(2, 3, 5, 4)
    pixels = torch.nn.Flatten()
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    up_left, down_right = padded[:, :, :-2, :-2], padded[:, :, 2:, 2:]

    def pair(view: np.ndarray) -> np.ndarray:
        return (view + view[..., ::-1]) / 2

    expected = pair(x.numpy()) / 2 + (pair(up_left) + pair(down_right)) / 4
    np.testing.assert_allclose(with_tta(pixels, "flip_shift")(x).numpy(), expected.reshape(2, -1), atol=1e-5)
    assert with_tta(pixels, "none") is pixels


def test_unknown_tta_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="tta"):
        module_for_export(torch.nn.Identity(), {"architecture": {"name": "x", "tta": "five-crop"}})


@pytest.mark.parametrize("mode", ["flip", "flip_shift"])
def test_exported_onnx_contains_the_tta(
    mode: str, trained_run_dir: Path, labelled_data_dir: Path, tmp_path: Path
) -> None:
    run_dir = copy_run(trained_run_dir, tmp_path / "run")
    record = json.loads((run_dir / "run.json").read_text())
    record["architecture"]["tta"] = mode
    (run_dir / "run.json").write_text(json.dumps(record))
    result = export_run(run_dir, ExportConfig(data=labelled_data_dir, verify_images=30, input_form="float"))
    assert result.ok
    session = ort.InferenceSession(str(run_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    logits = session.run(None, {"images": x})[0]
    network = load_run(run_dir).model
    with torch.inference_mode():
        plain = network(torch.from_numpy(x)).numpy()
        averaged = with_tta(network, mode)(torch.from_numpy(x)).numpy()
    assert np.abs(plain - averaged).max() > 1e-3  # the averaging changes the logits ...
    np.testing.assert_allclose(logits, averaged, atol=1e-5)  # ... and the exported graph computes it
    if mode == "flip":  # flip averaging alone makes the graph mirror-invariant
        mirrored_x = np.ascontiguousarray(x[..., ::-1])
        np.testing.assert_allclose(logits, session.run(None, {"images": mirrored_x})[0], atol=1e-5)
    provenance = json.loads(session.get_modelmeta().custom_metadata_map["cifar_edge.provenance"])
    assert provenance["tta"] == mode


def test_export_option_overrides_the_runs_tta(trained_run_dir: Path, labelled_data_dir: Path, tmp_path: Path) -> None:
    """A run trained and scored with flip TTA exported with --tta none: one pass per image, the bare network."""
    run_dir = copy_run(trained_run_dir, tmp_path / "run")
    record = json.loads((run_dir / "run.json").read_text())
    record["architecture"]["tta"] = "flip"
    (run_dir / "run.json").write_text(json.dumps(record))
    config = ExportConfig(data=labelled_data_dir, verify_images=30, tta="none", input_form="float")
    result = export_run(run_dir, config)
    assert result.ok
    session = ort.InferenceSession(str(run_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(3, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        plain = load_run(run_dir).model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"images": x})[0], plain, atol=1e-5)
    provenance = json.loads(session.get_modelmeta().custom_metadata_map["cifar_edge.provenance"])
    assert provenance["tta"] == "none"
    with pytest.raises(ExportUsageError, match="--tta 'five-crop'"):
        export_run(run_dir, ExportConfig(data=labelled_data_dir, tta="five-crop"))
