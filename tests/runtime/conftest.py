"""Runtime fixtures (helpers live in runtime_helpers.py, importable by name from the tests in this folder)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from runtime_helpers import (
    TINY_CLASSES,
    build_colour_model,
    build_form_model,
    save_model,
    solid_image,
    write_colour_folder,
)

from cifar_edge.runtime.contract import CONTRACT_METADATA_KEY, PROVENANCE_METADATA_KEY, Contract, unnormalized_contract


@pytest.fixture(scope="session")
def colour_contract() -> Contract:
    return unnormalized_contract(class_names=TINY_CLASSES, alpha_background=(0, 0, 0))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def colour_model(models_dir: Path, colour_contract: Contract) -> Path:
    provenance = json.dumps({"precision": "fp32", "weights_sha256": "0" * 64, "source": "tests/runtime/conftest.py"})
    model = build_colour_model(colour_contract, metadata={PROVENANCE_METADATA_KEY: provenance})
    return save_model(model, models_dir / "colour.onnx")


@pytest.fixture(scope="session")
def pixel_colour_model(models_dir: Path, colour_contract: Contract) -> Path:
    """The colour model in the pixel input form: uint8 NHWC in, resize and scaling in the graph."""
    return save_model(build_form_model(colour_contract.pixel_form(), "colour"), models_dir / "colour_pixels.onnx")


@pytest.fixture(scope="session")
def form_models(models_dir: Path) -> dict[str, Path]:
    """The same weights (a padded conv net, CIFAR-10 contract) in both input forms: {"float": path, "pixels": path}."""
    contract = Contract()
    return {
        "float": save_model(build_form_model(contract), models_dir / "conv_float.onnx"),
        "pixels": save_model(build_form_model(contract.pixel_form()), models_dir / "conv_pixels.onnx"),
    }


@pytest.fixture(scope="session")
def bad_models(models_dir: Path, colour_contract: Contract) -> dict[str, Path]:
    """Files that must all be refused with exit code 2, by the reason they should be refused for."""
    bad: dict[str, Path] = {}
    bad["no contract"] = save_model(build_colour_model(None), models_dir / "no_contract.onnx")
    newer = dict(colour_contract.to_dict(), schema_version=99)
    bad["newer schema"] = save_model(
        build_colour_model(None, metadata={CONTRACT_METADATA_KEY: json.dumps(newer)}), models_dir / "newer.onnx"
    )
    missing_fields = {"class_names": list(TINY_CLASSES)}
    bad["contract missing fields"] = save_model(
        build_colour_model(None, metadata={CONTRACT_METADATA_KEY: json.dumps(missing_fields)}),
        models_dir / "missing_fields.onnx",
    )
    wrong_types = dict(colour_contract.to_dict(), class_names="red")
    bad["contract wrong types"] = save_model(
        build_colour_model(None, metadata={CONTRACT_METADATA_KEY: json.dumps(wrong_types)}),
        models_dir / "wrong_types.onnx",
    )
    bad["contract not json"] = save_model(
        build_colour_model(None, metadata={CONTRACT_METADATA_KEY: "{not json"}), models_dir / "not_json.onnx"
    )
    bad["graph disagrees"] = save_model(
        build_colour_model(colour_contract, num_outputs=5), models_dir / "five_outputs.onnx"
    )
    pixel_contract = colour_contract.pixel_form()
    bad["pixel contract on float graph"] = save_model(
        build_form_model(colour_contract, "colour", metadata={CONTRACT_METADATA_KEY: pixel_contract.to_json()}),
        models_dir / "pixel_contract_float_graph.onnx",
    )
    bad["float contract on pixel graph"] = save_model(
        build_form_model(pixel_contract, "colour", metadata={CONTRACT_METADATA_KEY: colour_contract.to_json()}),
        models_dir / "float_contract_pixel_graph.onnx",
    )
    renamed = replace(pixel_contract, output_name="scores")
    bad["pixel graph without the contract's output"] = save_model(
        build_form_model(pixel_contract, "colour", metadata={CONTRACT_METADATA_KEY: renamed.to_json()}),
        models_dir / "pixel_no_scores.onnx",
    )
    bad["not onnx"] = models_dir / "notes.onnx"
    bad["not onnx"].write_text("this is a text file, not a model\n")
    bad["empty"] = models_dir / "empty.onnx"
    bad["empty"].write_bytes(b"")
    truncated = (models_dir / "colour_for_truncation.onnx").write_bytes(
        build_colour_model(colour_contract).SerializeToString()
    )
    assert truncated > 0
    data = (models_dir / "colour_for_truncation.onnx").read_bytes()
    bad["truncated"] = models_dir / "truncated.onnx"
    bad["truncated"].write_bytes(data[: len(data) // 2])
    bad["missing"] = models_dir / "does_not_exist.onnx"
    bad["directory"] = models_dir / "a_folder.onnx"
    bad["directory"].mkdir(exist_ok=True)
    return bad


@pytest.fixture(scope="session")
def colour_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``DIR/<class>/<n>.png`` for red, green, blue: 4 noisy 32x32 images per class."""
    return write_colour_folder(tmp_path_factory.mktemp("colour_images"), per_class=4, seed=1)


@pytest.fixture
def red_png(tmp_path: Path) -> Path:
    path = tmp_path / "red.png"
    solid_image((220, 20, 20)).save(path)
    return path
