"""cifar-train end to end: real image files, real load_splits, real training; exit codes 0, 1, 2 and 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cifar_edge.runtime.preprocess import normalize_batch
from cifar_edge.train.cli import app
from cifar_edge.train.data.load import load_splits
from cifar_edge.train.run_folder import load_run

FAST = ["--recipe", "seed", "--batch-size", "16", "--threads", "1"]


@pytest.fixture
def data_args(tiny_dataset_dir: Path, tmp_path: Path) -> list[str]:
    return ["--data", str(tiny_dataset_dir), "--cache-dir", str(tmp_path / "cache")]


def _invoke(args: list[str]):
    return CliRunner().invoke(app, args)


def test_json_summary_and_a_data_spec_that_reproduces_the_validation_set(data_args: list[str], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = _invoke([*data_args, *FAST, "--epochs", "2", "--run-dir", str(run_dir), "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)  # nothing but the JSON document on stdout
    assert summary["status"] == "completed" and summary["epochs"] == 2 and summary["run_dir"] == str(run_dir)
    assert 0.0 <= summary["final_val_accuracy"] <= 1.0 and summary["wall_time_s"] > 0
    for key in ("checkpoint", "weights", "run_json", "metrics_csv", "curves_png"):
        assert Path(summary[key]).is_file(), key

    record = json.loads((run_dir / "run.json").read_text())
    spec = record["data"]["spec"]
    assert Path(spec["data"]) == Path(data_args[1]).resolve() and spec["seed"] == 0
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["data"]["spec"] == spec
    # What cifar-export does: load_splits(**spec) gives back the very validation images the run was scored on,
    # and the exported pair (model.safetensors + run.json) scores them exactly as training did.
    again = load_splits(**spec, show_progress=False)
    assert len(again.val_labels) == record["metrics"]["val_images"] > 0
    run = load_run(run_dir)
    with torch.no_grad():
        logits = run.model(torch.from_numpy(normalize_batch(again.val_images, run.contract)))
    accuracy = float((logits.argmax(dim=1).numpy() == again.val_labels).mean())
    assert accuracy == pytest.approx(summary["final_val_accuracy"])


def test_human_output_and_default_run_folder(
    data_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = _invoke([*data_args, *FAST, "--epochs", "1", "--no-tune-malloc"])
    assert result.exit_code == 0, result.stderr
    assert "epoch 1/1  loss" in result.stdout and "val acc" in result.stdout and "done in" in result.stdout
    latest = tmp_path / "runs" / "latest"
    assert latest.is_symlink() and (latest / "run.json").is_file()
    assert str(latest.resolve().name) in result.stdout
    record = json.loads((latest / "run.json").read_text())
    assert record["config"]["tune_malloc"] is False and record["environment"]["malloc_tuned"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--recipe", "fast"], "unknown recipe 'fast'"),
        (["--val-fraction", "1.5"], "--val-fraction must be in [0, 1)"),
        (["--precision", "fp16"], "--precision must be one of auto, bf16, fp32"),
        (["--compile-mode", "fastest"], "--compile-mode must be one of default, reduce-overhead, max-autotune"),
        (["--set", "tta=five_crop"], "tta must be one of"),
        (["--set", "momentum"], "expected FIELD=VALUE"),
        (["--set", "bogus=1"], "unknown recipe field 'bogus'"),
        (["--model-kwargs", "{widths"], "--model-kwargs: not valid JSON"),
        (["--model", "resnet"], "unknown model 'resnet'"),
        (["--resume", "/nonexistent/run"], "no checkpoint.pt"),
        (["--data", "/nonexistent/folder"], "/nonexistent/folder"),
        (["--resume", "/some/run", "--batch-size", "8"], "--batch-size cannot change"),
    ],
)
def test_usage_and_data_errors_exit_2_with_one_line(
    data_args: list[str], tmp_path: Path, args: list[str], message: str
) -> None:
    if "--resume" in args:  # a resumed run takes its options from the checkpoint
        base = ["--threads", "1"]
    else:
        base = [*data_args, *FAST, "--epochs", "1", "--run-dir", str(tmp_path / "run")]
        if "--data" in args:
            base = base[2:]
    result = _invoke([*base, "--quiet", *args])
    assert result.exit_code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cifar-train: error: ") and message in lines[0], lines
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_exits_2(data_args: list[str], tmp_path: Path) -> None:
    result = _invoke([*data_args, *FAST, "--device", "cuda", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "CUDA is not available" in result.stderr


def test_unknown_option_exits_2() -> None:
    assert _invoke(["--learning-rate", "0.1"]).exit_code == 2


def test_diverging_run_exits_1_naming_the_step(data_args: list[str], tmp_path: Path) -> None:
    result = _invoke([*data_args, *FAST, "--epochs", "2", "--lr", "1e12", "--run-dir", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "training diverged: loss became" in result.stderr and "at step " in result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "failed" and report["step"] >= 1


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_exits_130_with_the_resume_command_and_the_run_resumes(
    data_args: list[str], tmp_path: Path, stop_signal: signal.Signals
) -> None:
    """A real SIGINT (Ctrl-C) or SIGTERM (a job scheduler's stop) sent to a real cifar-train process."""
    run_dir = tmp_path / "run"
    command = [sys.executable, "-c", "from cifar_edge.train.cli import main; main()"]
    args = [*data_args, *FAST, "--epochs", "100000", "--run-dir", str(run_dir), "--json"]
    process = subprocess.Popen([*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoint.pt").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()
        process.send_signal(stop_signal)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert f"resume with: cifar-train --resume {run_dir}" in stderr and "Traceback" not in stderr
    report = json.loads(stdout)
    assert report["status"] == "interrupted" and report["resume_command"] == f"cifar-train --resume {run_dir}"

    done = torch.load(run_dir / "checkpoint.pt", weights_only=True)["position"]["epoch"]
    resumed = _invoke(["--resume", str(run_dir), "--epochs", str(done + 1), "--threads", "1", "--json"])
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["epochs"] == done + 1
    assert os.path.samefile(json.loads(resumed.stdout)["run_dir"], run_dir)
