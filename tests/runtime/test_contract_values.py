"""Contracts that parse but are unusable (NaN or infinite normalisation, absurd sizes) are refused when the model
opens, with exit 2 and one line; no JSON output ever holds NaN, whatever the model computes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from cli_helpers import run_cli
from onnx import numpy_helper
from runtime_helpers import build_colour_model, save_model

from cifar_edge.runtime import Classifier, ModelError
from cifar_edge.runtime.contract import CONTRACT_METADATA_KEY, MAX_IMAGE_SIDE, Contract, ContractError

NAN, INF = float("nan"), float("inf")


def _with_contract(contract: dict, path: Path, *, free_size: bool = False) -> Path:
    model = build_colour_model(None, metadata={CONTRACT_METADATA_KEY: json.dumps(contract)})
    if free_size:  # height and width left to the contract, as a fully convolutional graph would
        for dim in model.graph.input[0].type.tensor_type.shape.dim[2:]:
            dim.ClearField("dim_value")
            dim.dim_param = "side"
    return save_model(model, path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mean": [NAN, 0.0, 0.0]}, "mean and std must be finite"),
        ({"std": [INF, 1.0, 1.0]}, "mean and std must be finite"),
        ({"std": [1.0, 0.0, 1.0]}, "std values must be > 0"),
        ({"std": [1e-9, 1.0, 1.0]}, "float16's range"),
        ({"mean": [10**400, 0, 0]}, "mean and std must be finite"),
        ({"image_size": [100_000, 100_000]}, f"image_size sides must be 1..{MAX_IMAGE_SIDE}"),
        ({"image_size": [32.5, 32]}, "image_size must be 2 integers"),
        ({"image_size": [True, 32]}, "image_size must be 2 integers"),
        ({"alpha_background": [0, 0, 256]}, "alpha_background must be 3 integers in 0..255"),
        ({"schema_version": 0}, "schema_version must be an integer >= 1"),
        ({"class_names": ["a", ""]}, "class names must be non-empty"),
        ({"input_name": 7}, "input_name must be a non-empty string"),
    ],
)
def test_every_number_of_the_contract_is_checked(colour_contract: Contract, change: dict, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        Contract.from_dict({**colour_contract.to_dict(), **change})


@pytest.mark.parametrize(
    ("change", "free_size", "message"),
    [
        ({"mean": [NAN, 0.0, 0.0]}, False, "mean and std must be finite, got mean [nan, 0.0, 0.0]"),
        ({"std": [INF, 1.0, 1.0]}, False, "mean and std must be finite"),
        ({"image_size": [100_000, 100_000]}, True, f"image_size sides must be 1..{MAX_IMAGE_SIDE}"),
    ],
)
def test_cifar_infer_refuses_the_model_in_one_line(
    colour_contract: Contract, red_png: Path, tmp_path: Path, change: dict, free_size: bool, message: str
) -> None:
    model = _with_contract({**colour_contract.to_dict(), **change}, tmp_path / "model.onnx", free_size=free_size)
    done = run_cli("cifar-infer", red_png, "--model", model, "--json", timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""  # nothing printed as a prediction, let alone NaN
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: {model}: invalid contract: ") and message in line, line


def test_cifar_eval_refuses_it_before_writing_anything(
    colour_contract: Contract, colour_images: Path, tmp_path: Path
) -> None:
    model = _with_contract({**colour_contract.to_dict(), "mean": [NAN, 0.0, 0.0]}, tmp_path / "model.onnx")
    done = run_cli("cifar-eval", model, "--data", colour_images, "--json", "--no-plots", timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert len(done.stderr.splitlines()) == 1 and "mean and std must be finite" in done.stderr
    assert not (tmp_path / "model.onnx.eval").exists()


def test_contract_size_over_max_pixels_is_refused(colour_contract: Contract, tmp_path: Path) -> None:
    model = _with_contract(colour_contract.to_dict(), tmp_path / "model.onnx")
    with pytest.raises(ModelError, match=r"contract image_size 32x32 \(1,024 pixels\) is over --max-pixels 1,000"):
        Classifier(model, max_pixels=1000)


def test_non_finite_scores_are_failures_never_nan_in_json(
    colour_contract: Contract, colour_images: Path, red_png: Path, tmp_path: Path
) -> None:
    """A valid contract on a model that computes NaN: each input fails in one line; --json stays valid JSON."""
    model = build_colour_model(colour_contract)
    (bias,) = [init for init in model.graph.initializer if init.name == "bias"]
    bias.CopyFrom(numpy_helper.from_array(np.full(3, np.nan, dtype=np.float32), "bias"))
    path = tmp_path / "nan.onnx"
    onnx.save(model, str(path))
    done = run_cli("cifar-infer", red_png, "--model", path, "--json", "--quiet", timeout=120)
    assert done.returncode == 1, done.stderr
    (record,) = [json.loads(line, parse_constant=_refuse) for line in done.stdout.splitlines()]
    assert record == {"path": str(red_png), "error": "the model's scores are not finite (NaN or infinity)"}
    evaluated = run_cli("cifar-eval", path, "--data", colour_images, "--json", "--no-plots", "-q", timeout=120)
    assert evaluated.returncode == 2 and evaluated.stdout == "", evaluated.stderr
    assert evaluated.stderr.splitlines() == [
        f"cifar-eval: error: {path}: the model failed on the data (the model's scores are not finite "
        "(NaN or infinity) for 12 of 12 images)"
    ]
    assert not (tmp_path / "nan.onnx.eval" / "eval.json").exists()


def _refuse(constant: str) -> float:
    raise AssertionError(f"{constant} in JSON output")
