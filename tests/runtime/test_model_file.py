"""Model files: which one is used (resolution order), and refusing files that are not usable models."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from runtime_helpers import build_colour_model, save_model
from typer.testing import CliRunner

from cifar_edge.runtime import Classifier, ModelError
from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.infer.cli import app
from cifar_edge.runtime.model_file import MODEL_ENV_VAR, check_model_file, latest_run_dir, resolve_model_path

runner = CliRunner()

REFUSALS = {
    "no contract": "carries no cifar-edge contract",
    "newer schema": "newer than this cifar-edge understands",
    "contract missing fields": "missing fields",
    "contract wrong types": "class_names must be a list of str",
    "contract not json": "contract is not valid JSON",
    "graph disagrees": "graph outputs 5 scores, contract names 3 classes",
    "pixel contract on float graph": "graph input type is tensor(float), expected uint8 (the contract's input_form "
    "is 'pixels')",
    "float contract on pixel graph": "graph input type is tensor(uint8), expected float32 or float16 (the "
    "contract's input_form is 'float')",
    "pixel graph without the contract's output": "graph has no output named 'scores' as the contract says "
    "(outputs: probabilities, logits)",
    "not onnx": "not an ONNX model",
    "empty": "empty file",
    "truncated": "not an ONNX model (file is truncated)",
    "missing": "model file not found",
    "directory": "is a directory",
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_unusable_models_are_refused_by_the_api(bad_models: dict[str, Path], case: str) -> None:
    with pytest.raises(ModelError, match=re.escape(REFUSALS[case])) as refused:
        Classifier(bad_models[case])
    assert str(bad_models[case]) in str(refused.value)


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_unusable_models_exit_2_with_one_line(bad_models: dict[str, Path], red_png: Path, case: str) -> None:
    result = runner.invoke(app, [str(red_png), "--model", str(bad_models[case])])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and REFUSALS[case] in lines[0]
    assert "Traceback" not in result.output


def test_graph_input_name_must_match_the_contract(tmp_path: Path, colour_contract: Contract) -> None:
    path = save_model(build_colour_model(colour_contract, input_name="pixels"), tmp_path / "renamed.onnx")
    with pytest.raises(ModelError, match="graph input is 'pixels', contract says 'images'"):
        Classifier(path)


def test_protobuf_framing_check_accepts_real_models(colour_model: Path) -> None:
    assert len(check_model_file(colour_model)) == 64  # sha256 hex


# -- resolution order -------------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, colour_model: Path) -> Path:
    """A working directory with runs/<stamp>/model.onnx; no CIFAR_EDGE_MODEL set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    run = tmp_path / "runs" / "20260102-030405"
    run.mkdir(parents=True)
    (run / "model.onnx").write_bytes(colour_model.read_bytes())
    return tmp_path


def test_nothing_to_resolve_names_every_place_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    with pytest.raises(ModelError, match=r"--model PATH, set CIFAR_EDGE_MODEL.*runs/latest/model\.onnx"):
        resolve_model_path(None)
    result = runner.invoke(app, ["x.png"])
    assert result.exit_code == 2 and "no model" in result.stderr


def test_latest_symlink(project: Path) -> None:
    os.symlink("20260102-030405", project / "runs" / "latest")
    resolved = resolve_model_path(None)
    assert resolved.origin == "runs/latest"
    assert resolved.path.resolve() == (project / "runs" / "20260102-030405" / "model.onnx").resolve()


def test_latest_pointer_file_where_symlinks_fail(project: Path) -> None:
    (project / "runs" / "latest").write_text("20260102-030405\n")
    assert latest_run_dir() == Path("runs") / "20260102-030405"
    assert resolve_model_path(None).path == Path("runs/20260102-030405/model.onnx")


def test_dangling_or_garbage_latest_is_ignored(project: Path) -> None:
    (project / "runs" / "latest").write_text("no-such-run\n")
    assert latest_run_dir() is None
    (project / "runs" / "latest").unlink()
    os.symlink("missing-run", project / "runs" / "latest")
    assert latest_run_dir() is None


def test_order_flag_then_env_then_latest(
    project: Path, monkeypatch: pytest.MonkeyPatch, colour_model: Path, red_png: Path
) -> None:
    (project / "runs" / "latest").write_text("20260102-030405")
    env_model = project / "env.onnx"
    env_model.write_bytes(colour_model.read_bytes())
    flag_model = project / "flag.onnx"
    flag_model.write_bytes(colour_model.read_bytes())

    assert resolve_model_path(None).origin == "runs/latest"
    monkeypatch.setenv(MODEL_ENV_VAR, str(env_model))
    assert resolve_model_path(None) == type(resolve_model_path(None))(env_model, MODEL_ENV_VAR)
    assert resolve_model_path(str(flag_model)).path == flag_model

    # The CLI says which model it used, and where that choice came from.
    result = runner.invoke(app, [str(red_png), "--model", str(flag_model)])
    assert result.exit_code == 0 and f"model: {flag_model} (from --model" in result.stderr
    result = runner.invoke(app, [str(red_png)])
    assert result.exit_code == 0 and f"model: {env_model} (from CIFAR_EDGE_MODEL" in result.stderr
    monkeypatch.setenv(MODEL_ENV_VAR, "")  # empty counts as unset
    result = runner.invoke(app, [str(red_png)])
    assert result.exit_code == 0 and "(from runs/latest" in result.stderr
    result = runner.invoke(app, [str(red_png), "--quiet"])
    assert result.exit_code == 0 and result.stderr == ""
