"""``cifar-export`` through typer's runner: exit codes, one-line errors, --json, --quiet, runs/latest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from export_helpers import copy_run
from typer.testing import CliRunner

from cifar_edge.export.cli import app
from cifar_edge.runtime.common.command import ExitCode

pytestmark = pytest.mark.usefixtures("single_torch_thread")

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def _one_line_error(result) -> str:
    """The single ``cifar-export:`` line on stderr (progress lines may precede it), with no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("cifar-export:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_json_export_gated_on_the_runs_own_validation_split(trained_run_dir: Path, tmp_path: Path) -> None:
    run_dir = copy_run(trained_run_dir, tmp_path / "run")
    result = _invoke(run_dir, "--format", "onnx", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ok"] and document["exit_code"] == 0
    (artifact,) = document["artifacts"]
    assert artifact["passed"] and Path(artifact["path"]) == run_dir / "model.onnx"
    assert Path(artifact["parity_path"]).is_file()
    parity = artifact["parity"]
    if parity["verification_source"] is None:  # the training data helper is not available in this checkout
        pytest.skip(f"run data not loadable here: {document['notes']}")
    assert "validation split" in parity["verification_source"]
    (real,) = [c for c in parity["backends"][0]["comparisons"] if c["name"] == "real images"]
    assert real["reference_accuracy"] is not None and real["top1_agreement"] == 1.0


def test_failed_gate_exits_1_names_the_check_and_writes_nothing(
    trained_run_dir: Path, labelled_data_dir: Path, tmp_path: Path
) -> None:
    run_dir = copy_run(trained_run_dir, tmp_path / "run")
    result = _invoke(run_dir, "--data", labelled_data_dir, "--max-abs-diff", "1e-12", "--quiet")
    assert result.exit_code == 1
    assert result.stdout == ""  # --quiet: errors only, on stderr
    line = _one_line_error(result)
    assert "model.onnx failed the parity gate" in line and "max |logit diff|" in line and "FAILED by" in line
    assert not (run_dir / "model.onnx").exists() and not (run_dir / "model.onnx.parity.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "torchscript", "--dtype", "fp16"], "apply to ONNX only"),
        (["--quantize", "int8", "--dtype", "fp16"], "do not combine"),
        (["--opset", "5"], "--opset must be between"),
        (["--verify-images", "-1"], "--verify-images must be >= 0"),
        (["--quantize", "int8", "--int8-weight-bits", "9"], "--int8-weight-bits must be one of auto, 7, 8"),
        (["--quantize", "int8", "--int8-gelu", "exact"], "--int8-gelu must be one of sigmoid, float"),
    ],
)
def test_bad_option_combinations_exit_2(tiny_run_dir: Path, args: list[str], message: str) -> None:
    result = _invoke(tiny_run_dir, *args)
    assert result.exit_code == 2
    assert message in _one_line_error(result)


def test_unusable_run_folders_exit_2(tmp_path: Path, tiny_run_dir: Path) -> None:
    missing = _invoke(tmp_path / "nope")
    assert missing.exit_code == 2 and "run folder not found" in _one_line_error(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    not_a_run = _invoke(empty)
    assert not_a_run.exit_code == 2 and "run.json" in _one_line_error(not_a_run)
    corrupt = copy_run(tiny_run_dir, tmp_path / "corrupt")
    (corrupt / "model.safetensors").write_bytes(b"not safetensors at all")
    bad_weights = _invoke(corrupt)
    assert bad_weights.exit_code == 2 and "model.safetensors" in _one_line_error(bad_weights)


def test_int8_without_any_real_images_exits_2(tiny_run_dir: Path) -> None:
    result = _invoke(tiny_run_dir, "--quantize", "int8")
    assert result.exit_code == 2 and "calibrate" in _one_line_error(result)


@pytest.mark.parametrize("pointer", ["symlink", "text file"])
def test_default_run_dir_is_runs_latest(
    tiny_run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pointer: str
) -> None:
    monkeypatch.chdir(tmp_path)
    run_dir = copy_run(tiny_run_dir, tmp_path / "runs" / "20250101-000000")
    latest = tmp_path / "runs" / "latest"
    if pointer == "symlink":
        os.symlink(run_dir.name, latest)
    else:
        latest.write_text(run_dir.name + "\n")
    result = _invoke("--format", "torchscript", "--no-verify", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert (run_dir / "model.torchscript.pt").is_file()
    assert not (run_dir / "model.torchscript.pt.parity.json").exists()  # --no-verify writes no parity claim


def test_no_run_dir_and_no_latest_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _invoke()
    assert result.exit_code == 2 and "runs/latest" in _one_line_error(result)


def test_probes_only_when_the_run_has_no_data_record(tiny_run_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "exports"
    output.mkdir()  # an existing folder: the artifact gets its default name inside it
    result = _invoke(tiny_run_dir, "--format", "exportedprogram", "--output", output, "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert any("no 'data' record" in note for note in document["notes"])
    assert sorted(path.name for path in output.iterdir()) == ["model.pt2", "model.pt2.parity.json"]
    (artifact,) = document["artifacts"]
    assert artifact["passed"] and artifact["parity"]["verification_source"] is None
    assert "no real images: compared on random probes only" in artifact["parity"]["notes"]
    assert not list(tiny_run_dir.glob("model.pt2*"))  # nothing written into the run folder itself


def test_unreachable_opset_is_a_tool_failure_with_its_own_exit_code(tiny_run_dir: Path, tmp_path: Path) -> None:
    # opset 13 is valid ONNX, but the version converter cannot lower this graph to it (it stays at 18). (The pixel
    # form needs opset 18 whatever the graph: a usage error, tests/export/formats/test_pixels.py.)
    target = tmp_path / "model.onnx"
    result = _invoke(tiny_run_dir, "--opset", "13", "--input", "float", "--no-verify", "--output", target)
    assert result.exit_code == ExitCode.TOOL_FAILED != ExitCode.PROVIDER_UNAVAILABLE
    line = _one_line_error(result)
    assert "opset 18, not the requested 13" in line
    assert not target.exists()


def test_several_formats_need_an_output_folder(tiny_run_dir: Path, tmp_path: Path) -> None:
    result = _invoke(tiny_run_dir, "--format", "all", "--output", tmp_path / "model.onnx")
    assert result.exit_code == 2 and "need a folder" in _one_line_error(result)
