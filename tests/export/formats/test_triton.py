"""cifar-export --format triton: a Triton model repository whose config parses as Triton's ModelConfig (tritonclient's
protobuf), written atomically, opened by cifar-eval's opener as the inner model.onnx."""

from __future__ import annotations

from pathlib import Path

import pytest
from export_helpers import copy_run

from cifar_edge.export import ExportConfig, export_run
from cifar_edge.export.config import ExportUsageError
from cifar_edge.export.formats import TRITON, row_of
from cifar_edge.export.models import ModelLoadError, detect_kind, open_model

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _config(repository: Path):
    text = (repository / "cifar-edge" / "config.pbtxt").read_text()
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_float_form_repository_and_atomic_replacement(tiny_run_dir: Path, tmp_path: Path) -> None:
    run_dir = copy_run(tiny_run_dir, tmp_path / "run")
    output = tmp_path / "models"
    config = ExportConfig(formats=(TRITON,), input_form="float", verify_images=8, output=str(output))
    result = export_run(run_dir, config)
    assert result.exit_code == 0, result.to_dict()
    (artifact,) = result.artifacts
    inner = output / "cifar-edge" / "1" / "model.onnx"
    assert artifact.path == output and artifact.size_bytes == inner.stat().st_size
    assert (tmp_path / "models.parity.json").is_file()
    parsed = _config(output)
    (images,) = parsed.input
    assert (images.name, images.data_type, list(images.dims)) == ("images", model_config_pb2.TYPE_FP32, [3, 32, 32])
    (logits,) = parsed.output
    assert (logits.name, logits.label_filename, parsed.max_batch_size) == ("logits", "labels.txt", 64)
    assert detect_kind(output) == detect_kind(output / "cifar-edge") == TRITON
    opened = open_model(output, "cpu")
    try:
        assert opened.kind == TRITON and opened.provenance is not None and opened.provenance["format"] == TRITON
    finally:
        opened.close()

    (output / "other-model").mkdir()  # the whole folder would be replaced: refused while it holds anything else
    with pytest.raises(ExportUsageError, match="is not a Triton repository of one model"):
        export_run(run_dir, ExportConfig(formats=(TRITON,), output=str(output)))
    (output / "other-model").rmdir()
    again = export_run(run_dir, ExportConfig(formats=(TRITON,), verify_images=8, output=str(output)))
    assert again.exit_code == 0, again.to_dict()
    assert sorted(path.name for path in output.iterdir()) == ["cifar-edge"]
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []
    assert list(_config(output).input[0].dims) == [-1, -1, 3]
    assert row_of(TRITON).model_file(output) == inner


def test_a_folder_that_is_no_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="and not a Triton model repository"):
        detect_kind(tmp_path / "empty")
