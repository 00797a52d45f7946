"""run.json that parses but cannot describe a model: exit 2, one line naming the file and the field (cifar-export
and cifar-eval alike), and a fuzz of the reader: any mutation loads or is a one-line RunFolderError."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cifar_edge.export.cli import app as export_app
from cifar_edge.export.evaluate.cli import app as eval_app
from cifar_edge.train.run_folder import RunFolderError, load_run


def _mutated_run(source: Path, destination: Path, mutate) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "model.safetensors", destination / "model.safetensors")
    record = json.loads((source / "run.json").read_text())
    mutate(record)
    (destination / "run.json").write_text(json.dumps(record))
    return destination


def _kwargs(**change):
    return lambda record: record["architecture"]["kwargs"].update(change)


CASES = {
    "unknown keyword": (_kwargs(depth=3), "architecture: kwargs.depth: airnet takes no argument 'depth'"),
    "negative width": (_kwargs(widths=[-8, 16, 16]), "architecture: kwargs.widths must be 3 integers in 1..4096"),
    "huge width": (_kwargs(widths=[8, 10**9, 16]), "architecture: kwargs.widths must be 3 integers in 1..4096"),
    "negative classes": (_kwargs(num_classes=-3), "architecture: kwargs.num_classes must be an integer in 2.."),
    "classes disagree": (_kwargs(num_classes=5), "architecture.kwargs.num_classes is 5, but the contract names 3"),
    "architecture a list": (lambda r: r.update(architecture=["airnet"]), "architecture must be an object"),
    "name not a string": (lambda r: r["architecture"].update(name=7), "architecture.name must be a string"),
    "kwargs a string": (lambda r: r["architecture"].update(kwargs="x"), "architecture.kwargs must be an object"),
    "unknown architecture": (
        lambda r: r["architecture"].update(name="resnet"),
        "architecture: unknown model 'resnet'; available: airnet, airnet-l, airnet-m, airnet-s, seed",
    ),
    "NaN in the contract": (
        lambda r: r["contract"].update(std=[float("nan"), 1, 1]),
        "contract: invalid contract: mean and std must be finite",
    ),
    "data not an object": (lambda r: r.update(data=[1, 2]), "data must be an object"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_unusable_run_json_is_exit_2_naming_file_and_field(tiny_run_dir: Path, tmp_path: Path, case: str) -> None:
    mutate, message = CASES[case]
    run_dir = _mutated_run(tiny_run_dir, tmp_path / "run", mutate)
    for app, prefix, args in (
        (export_app, "cifar-export", [str(run_dir), "--no-verify", "--quiet"]),
        (eval_app, "cifar-eval", [str(run_dir), "--data", str(tmp_path / "none")]),
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"{prefix}: error: {run_dir / 'run.json'}: {message}"), line
        assert "internal error" not in line and "Traceback" not in result.output
    assert not (run_dir / "model.onnx").exists()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=6,
)
FIELDS = [
    ("architecture",),
    ("architecture", "name"),
    ("architecture", "kwargs"),
    ("architecture", "kwargs", "widths"),
    ("architecture", "kwargs", "num_classes"),
    ("architecture", "kwargs", "logit_scale"),
    ("architecture", "kwargs", "pool_first"),
    ("architecture", "kwargs", "extra"),
    ("architecture", "tta"),
    ("contract",),
    ("contract", "class_names"),
    ("contract", "image_size"),
    ("contract", "mean"),
    ("record_schema",),
    ("data",),
    ("metrics",),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(st.sampled_from(FIELDS), json_values), min_size=1, max_size=3))
def test_run_json_fuzz_loads_or_is_one_clean_error(tiny_run_dir: Path, tmp_path: Path, changes: list) -> None:
    def mutate(record: dict) -> None:
        for path, value in changes:
            target = record
            for key in path[:-1]:
                if not isinstance(target.get(key), dict):
                    target[key] = {}
                target = target[key]
            target[path[-1]] = value

    run_dir = _mutated_run(tiny_run_dir, tmp_path / "fuzz", mutate)
    try:
        run = load_run(run_dir)
    except RunFolderError as error:
        assert "\n" not in str(error) and str(error).startswith(str(run_dir)), str(error)
        return
    assert run.contract.num_classes == 3
