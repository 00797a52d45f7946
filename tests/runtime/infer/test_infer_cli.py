"""``cifar-infer`` end to end: output formats, exit codes, bad inputs among good ones, --doctor."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from PIL import Image
from typer.testing import CliRunner

from cifar_edge.runtime.infer.cli import app

runner = CliRunner()
PREDICTION_KEYS = {"path", "label", "index", "probability", "top_k"}


def invoke(model: Path, *args: str, stdin: str | None = None):
    return runner.invoke(app, [*args, "--model", str(model)], input=stdin)


def json_records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture
def mixed_inputs(tmp_path: Path, colour_images: Path) -> list[Path]:
    """Good images interleaved with one file of each bad class."""
    rng = np.random.default_rng(0)
    noisy = tmp_path / "noisy.png"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(noisy)
    bad = {
        "empty.png": b"",
        "text.jpg": b"hello, not an image\n",
        "truncated.png": noisy.read_bytes()[: noisy.stat().st_size // 2],
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    big = tmp_path / "big.png"
    Image.new("RGB", (200, 200), (250, 0, 0)).save(big)  # 40,000 pixels: over --max-pixels 10000 below
    good = sorted(colour_images.rglob("*.png"))
    return [good[0], tmp_path / "empty.png", good[4], tmp_path / "text.jpg", tmp_path / "truncated.png", big, good[8]]


def test_json_lines_schema_with_failures_in_place(colour_model: Path, mixed_inputs: list[Path]) -> None:
    result = invoke(colour_model, *map(str, mixed_inputs), "--json", "--top-k", "2", "--max-pixels", "10000")
    assert result.exit_code == 1, result.output
    records = json_records(result.stdout)
    assert [r["path"] for r in records] == [str(p) for p in mixed_inputs]
    good = [records[i] for i in (0, 2, 6)]
    for record in good:
        assert set(record) == PREDICTION_KEYS
        assert isinstance(record["index"], int) and 0 < record["probability"] <= 1
        assert [set(entry) for entry in record["top_k"]] == [{"label", "probability"}] * 2
        assert record["top_k"][0] == {"label": record["label"], "probability": record["probability"]}
    assert [r["label"] for r in good] == ["blue", "green", "red"]
    errors = {Path(r["path"]).name: r["error"] for r in records if "error" in r}
    assert set(errors) == {"empty.png", "text.jpg", "truncated.png", "big.png"}
    assert errors["empty.png"].startswith("empty file")
    assert errors["text.jpg"].startswith("not an image")
    assert "truncated" in errors["truncated.png"]
    assert "decompression-bomb limit of 10,000" in errors["big.png"]
    failure_lines = [line for line in result.stderr.splitlines() if ": " in line and line.startswith("/")]
    assert len(failure_lines) == 4 and all(line.split(": ")[0] in map(str, mixed_inputs) for line in failure_lines)
    assert "Traceback" not in result.output


def test_table_output(colour_model: Path, colour_images: Path) -> None:
    result = invoke(colour_model, str(colour_images))
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0]
    for column in ("path", "label", "probability", "next 2"):
        assert column in header
    rows = [line.split("│") for line in result.stdout.splitlines()[2:]]
    assert len(rows) == 12 and all(len(row) == 4 for row in rows)  # one line per image: paths are not folded
    assert [row[1].strip() for row in rows].count("red") == 4
    assert "classified 12 of 12 inputs" in result.stderr
    narrow = invoke(colour_model, str(colour_images), "--top-k", "1")
    assert "next" not in narrow.stdout.splitlines()[0]


def test_folder_glob_and_stdin_inputs(colour_model: Path, colour_images: Path) -> None:
    from_folder = json_records(invoke(colour_model, str(colour_images), "--json").stdout)
    from_glob = json_records(invoke(colour_model, f"{colour_images}/**/*.png", "--json").stdout)
    listing = "\n".join(r["path"] for r in from_folder) + "\n"
    from_stdin = json_records(invoke(colour_model, "-", "--json", stdin=listing).stdout)
    assert len(from_folder) == 12
    assert sorted(r["path"] for r in from_glob) == sorted(r["path"] for r in from_folder)
    assert from_stdin == from_folder


def test_batch_size_does_not_change_results(colour_model: Path, colour_images: Path) -> None:
    outputs = [
        json_records(invoke(colour_model, str(colour_images), "--json", "-b", size, "--decode-workers", "2").stdout)
        for size in ("1", "7", "256")
    ]
    for records in outputs[1:]:
        assert [r["label"] for r in records] == [r["label"] for r in outputs[0]]
        np.testing.assert_allclose(
            [r["probability"] for r in records], [r["probability"] for r in outputs[0]], atol=1e-6
        )


def test_streams_and_threads_are_used_and_reported(colour_model: Path, colour_images: Path) -> None:
    reference = json_records(invoke(colour_model, str(colour_images), "--json", "--threads", "1").stdout)
    for args in (("--streams", "3"), ("--streams", "2", "--threads", "2")):
        result = invoke(colour_model, str(colour_images), "--json", "-b", "8", *args)
        assert result.exit_code == 0
        threads = args[3] if len(args) > 2 else "1"
        assert f"model runs: {args[1]} at once x {threads} thread" in result.stderr
        records = json_records(result.stdout)
        assert [r["path"] for r in records] == [r["path"] for r in reference]
        np.testing.assert_allclose(
            [r["probability"] for r in records], [r["probability"] for r in reference], atol=1e-6
        )
    assert "model runs: 1 at once x 1 thread" in invoke(colour_model, str(colour_images), "--threads", "1").stderr
    assert invoke(colour_model, str(colour_images), "--streams", "0").exit_code == 2


def test_quiet_keeps_only_failures_on_stderr(colour_model: Path, mixed_inputs: list[Path]) -> None:
    result = invoke(colour_model, str(mixed_inputs[0]), str(mixed_inputs[1]), "--quiet")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"{mixed_inputs[1]}: empty file (0 bytes)"]


@pytest.mark.parametrize(
    "arguments",
    [[], ["x.png", "--top-k", "0"], ["x.png", "--batch-size", "0"], ["x.png", "--no-such-option"]],
)
def test_usage_errors_exit_2(colour_model: Path, arguments: list[str]) -> None:
    result = invoke(colour_model, *arguments)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_all_inputs_failing_exits_1(colour_model: Path, tmp_path: Path) -> None:
    result = invoke(colour_model, str(tmp_path / "missing.png"), "*.nothing")
    assert result.exit_code == 1
    assert result.stdout == ""


def test_doctor_reports_installation_and_model(colour_model: Path) -> None:
    result = runner.invoke(app, ["--doctor", "--model", str(colour_model)])
    assert result.exit_code == 0, result.output
    for expected in (f"onnxruntime {onnxruntime.__version__}", "provider cpu", "loads", "classes", "red, green, blue"):
        assert expected in result.stdout
    report = json.loads(runner.invoke(app, ["--doctor", "--json", "--model", str(colour_model)]).stdout)
    assert report["onnxruntime"]["packages"].get("onnxruntime") == onnxruntime.__version__
    assert report["onnxruntime"]["conflict"] is False
    assert report["providers"]["loads"]["cpu"] == "loads"
    assert report["model"]["contract"]["class_names"] == ["red", "green", "blue"]
    assert report["model"]["provenance"]["precision"] == "fp32"
    assert set(report["gpu_libraries"]) >= {"libcudart", "libcudnn", "libnvinfer"}
    assert report["problems"] == [] and report["exit_code"] == 0


def test_doctor_exit_codes_match_what_classification_would_do(colour_model: Path, bad_models: dict[str, Path]) -> None:
    assert runner.invoke(app, ["--doctor", "--model", str(bad_models["no contract"])]).exit_code == 2
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        result = runner.invoke(app, ["--doctor", "--model", str(colour_model), "--provider", "cuda"])
        assert result.exit_code == 3
        assert "provider cuda" in result.stdout and "CPU-only" in result.stdout


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("cifar-infer (cifar-edge) ")


def test_installed_console_script(colour_model: Path, colour_images: Path, tmp_path: Path) -> None:
    """The real `cifar-infer` entry point in a subprocess: stdin piping, exit codes, no tracebacks."""
    script = shutil.which("cifar-infer", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("cifar-infer console script not installed in this environment")
    listing = "\n".join(str(p) for p in sorted(colour_images.rglob("*.png"))[:3]) + f"\n{tmp_path / 'gone.png'}\n"
    env = {**os.environ, "CIFAR_EDGE_MODEL": str(colour_model)}
    done = subprocess.run(
        [script, "-", "--json", "--provider", "cpu"],
        input=listing,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert [("error" in r) for r in json_records(done.stdout)] == [False, False, False, True]
    assert "Traceback" not in done.stderr
    refused = subprocess.run(
        [script, str(colour_images), "--model", str(tmp_path / "missing.onnx")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
