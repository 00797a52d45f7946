"""A run record can request flip TTA; the exported graph then contains it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from export_helpers import copy_run

from cifar_edge.export import ExportConfig, ExportUsageError, FlipAverage, export_run
from cifar_edge.export.tta import module_for_export
from cifar_edge.train.models import build_model
from cifar_edge.train.run_files import load_run

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


def test_unknown_tta_mode_is_refused() -> None:
    with pytest.raises(ExportUsageError, match="tta"):
        module_for_export(torch.nn.Identity(), {"architecture": {"name": "x", "tta": "five-crop"}})


def test_exported_onnx_contains_flip_tta(trained_run_dir: Path, labelled_data_dir: Path, tmp_path: Path) -> None:
    run_dir = copy_run(trained_run_dir, tmp_path / "run")
    record = json.loads((run_dir / "run.json").read_text())
    record["architecture"]["tta"] = "flip"
    (run_dir / "run.json").write_text(json.dumps(record))
    result = export_run(run_dir, ExportConfig(data=labelled_data_dir, verify_images=30))
    assert result.ok
    session = ort.InferenceSession(str(run_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    mirrored_x = np.ascontiguousarray(x[..., ::-1])
    logits = session.run(None, {"images": x})[0]
    np.testing.assert_allclose(logits, session.run(None, {"images": mirrored_x})[0], atol=1e-5)
    network = load_run(run_dir).model
    with torch.inference_mode():
        plain, plain_mirrored = network(torch.from_numpy(x)).numpy(), network(torch.from_numpy(mirrored_x)).numpy()
    assert np.abs(plain - plain_mirrored).max() > 1e-3  # the bare network is not mirror-invariant ...
    np.testing.assert_allclose(logits, (plain + plain_mirrored) / 2, atol=1e-5)  # ... the exported graph averages
    provenance = json.loads(session.get_modelmeta().custom_metadata_map["cifar_edge.provenance"])
    assert provenance["tta"] == "flip"
