"""runtime/serve/repository.py: the Triton repository cifar-export writes, read back by cifar-serve's strict reader,
which agrees with Triton's own ModelConfig protobuf (tritonclient's) on it; malformed configs refused in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from export_helpers import copy_run

from cifar_edge.export import ExportConfig, export_run
from cifar_edge.runtime.serve.repository import (
    DEFAULT_MAX_QUEUE_DELAY_US,
    RepositoryError,
    ServedModel,
    read_repository,
    served_model,
)

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")


@pytest.fixture(scope="module")
def repository(tiny_run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = copy_run(tiny_run_dir, tmp_path_factory.mktemp("triton-run"))
    result = export_run(run_dir, ExportConfig(formats=("triton",), verify_images=8))
    assert result.exit_code == 0, result.to_dict()
    return run_dir / "triton"


def _copy(repository: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(repository, tmp_path / "repo"))


def test_round_trip_with_the_export_row(repository: Path) -> None:
    served = read_repository(repository)
    folder = repository / "cifar-edge"
    assert served == ServedModel(
        name="cifar-edge",
        model_path=folder / "1" / "model.onnx",
        max_batch_size=64,
        max_queue_delay_ms=DEFAULT_MAX_QUEUE_DELAY_US / 1000,
        instances=1,
        labels_path=folder / "labels.txt",
    )
    assert read_repository(folder) == served == served_model(repository) == served_model(folder)
    assert served_model(served.model_path) == ServedModel(name="model", model_path=served.model_path)


def test_the_reader_agrees_with_tritons_protobuf(repository: Path) -> None:
    folder = repository / "cifar-edge"
    config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    served = read_repository(repository)
    assert (config.name, config.backend, config.max_batch_size) == (served.name, "onnxruntime", served.max_batch_size)
    assert config.dynamic_batching.max_queue_delay_microseconds / 1000 == served.max_queue_delay_ms
    assert sum(group.count for group in config.instance_group) == served.instances
    assert [group.kind for group in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    (pixels,) = config.input
    assert (pixels.name, pixels.data_type, list(pixels.dims)) == ("pixels", model_config_pb2.TYPE_UINT8, [-1, -1, 3])
    outputs = {output.name: output for output in config.output}
    assert set(outputs) == {"probabilities", "logits"}
    classes = (folder / "labels.txt").read_text().splitlines()
    for output in outputs.values():
        assert output.data_type == model_config_pb2.TYPE_FP32 and list(output.dims) == [len(classes)]
    assert outputs["probabilities"].label_filename == "labels.txt" and not outputs["logits"].label_filename
    assert folder / outputs["probabilities"].label_filename == served.labels_path


def test_the_highest_version_serves_and_unknown_blocks_are_ignored(repository: Path, tmp_path: Path) -> None:
    folder = _copy(repository, tmp_path) / "cifar-edge"
    shutil.copytree(folder / "1", folder / "10")
    (folder / "2").mkdir()  # a version without a model file is skipped
    config = folder / "config.pbtxt"
    extra = 'optimization { execution_accelerators { cpu_execution_accelerator : [ { name : "openvino" } ] } }\n'
    config.write_text(config.read_text() + extra + "# a comment\nversion_policy: { latest: { num_versions: 1 } }\n")
    served = read_repository(folder.parent)
    assert served.model_path == folder / "10" / "model.onnx" and served.max_batch_size == 64


def test_no_dynamic_batching_means_one_request_per_call(repository: Path, tmp_path: Path) -> None:
    folder = _copy(repository, tmp_path) / "cifar-edge"
    config = folder / "config.pbtxt"
    text = config.read_text()
    start = text.index("dynamic_batching")
    config.write_text(text[:start] + text[text.index("}", start) + 1 :])
    served = read_repository(folder)
    assert (served.max_batch_size, served.max_queue_delay_ms) == (1, None)


BAD_CONFIGS = {
    "unclosed block": ("dynamic_batching {\n  max_queue_delay_microseconds: 100\n", "expected"),
    "stray character": ('name: "cifar-edge"\nmax_batch_size: 8 @\n', "unexpected character"),
    "string for a number": ('max_batch_size: "64"\n', "max_batch_size must be a number"),
    "negative batch": ("max_batch_size: -1\n", "max_batch_size must be an integer >= 1"),
    "fractional delay": ("dynamic_batching { max_queue_delay_microseconds: 1.5 }\n", "integer >= 0"),
    "given twice": ("max_batch_size: 4\nmax_batch_size: 8\n", "more than once"),
    "other name": ('name: "resnet"\n', "differs from its folder's name"),
    "other backend": ('backend: "tensorrt"\n', "is not onnxruntime"),
    "label path": ('output [ { name: "logits" label_filename: "../../etc/passwd" } ]\n', "plain file name"),
    "missing labels": ('output [ { name: "logits" label_filename: "nope.txt" } ]\n', "is not a file"),
    "missing colon": ('name "x"\n', "expected ':'"),
    "unclosed list": ("instance_group [ { count: 2 }\n", "expected ',' or ']'"),
    "unterminated string": ('name: "cifar-edge\n', "unexpected character"),
}


@pytest.mark.parametrize("text, message", BAD_CONFIGS.values(), ids=BAD_CONFIGS)
def test_malformed_configs_are_refused_in_one_line(repository: Path, tmp_path: Path, text: str, message: str) -> None:
    folder = _copy(repository, tmp_path) / "cifar-edge"
    (folder / "config.pbtxt").write_text(text)
    with pytest.raises(RepositoryError) as raised:
        read_repository(folder.parent)
    error = str(raised.value)
    assert "\n" not in error and str(folder / "config.pbtxt") in error and message in error, error


def test_repository_shapes_that_cannot_be_served(repository: Path, tmp_path: Path) -> None:
    root = _copy(repository, tmp_path)
    with pytest.raises(RepositoryError, match="no such model file"):
        served_model(tmp_path / "absent")
    with pytest.raises(RepositoryError, match="not a model repository"):
        served_model(tmp_path / "repo" / "cifar-edge" / "1")
    shutil.copytree(root / "cifar-edge", root / "other")
    (root / "other" / "config.pbtxt").write_text('name: "other"\ndynamic_batching { }\n')
    with pytest.raises(RepositoryError, match="several models"):
        served_model(root)
    assert served_model(root, "other") == ServedModel(
        name="other", model_path=root / "other" / "1" / "model.onnx", max_queue_delay_ms=0.0
    )
    with pytest.raises(RepositoryError, match="no model 'absent'"):
        served_model(root, "absent")
    shutil.rmtree(root / "other" / "1")
    with pytest.raises(RepositoryError, match=r"no version folder \(1/, 2/, \.\.\.\) holds model.onnx"):
        read_repository(root / "other")
