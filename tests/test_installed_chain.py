"""A real, non-editable install into a fresh venv runs every command and the whole chain outside the repository.

Slow (minutes: pip installs torch from the local package index): ``pytest -m slow tests/test_installed_chain.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_data import write_image_folder

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("train", "export", "runtime")
COMMANDS = ("cifar-train", "cifar-export", "cifar-infer", "cifar-eval", "cifar-bench")
INSTALL_TIMEOUT_S = 1500
STEP_TIMEOUT_S = 300


def _copy_source(target: Path) -> Path:
    """The files a build reads, without build/, *.egg-info or __pycache__ that an in-tree build would reuse."""
    target.mkdir()
    shutil.copy2(REPO_ROOT / "pyproject.toml", target)
    for extra in ("README.md", "LICENSE", "LICENSE.txt"):
        if (REPO_ROOT / extra).is_file():
            shutil.copy2(REPO_ROOT / extra, target)
    for folder in SOURCE_FOLDERS:
        shutil.copytree(REPO_ROOT / folder, target / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def _clean_env(venv: Path) -> dict[str, str]:
    """The environment of a user who activated the fresh venv: nothing points back at the repository or its venv."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(args: list[str | Path], cwd: Path, env: dict[str, str], timeout: int = STEP_TIMEOUT_S):
    done = subprocess.run([str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fresh_venv_install_runs_every_command_and_the_chain(tmp_path: Path) -> None:
    source = _copy_source(tmp_path / "source")
    venv = tmp_path / "venv"
    base_python = shutil.which("python3") or sys.executable
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, timeout=300)
    bin_dir = venv / "bin"
    env = _clean_env(venv)
    _run([bin_dir / "pip", "install", f"{source}[train,cpu]"], cwd=tmp_path, env=env, timeout=INSTALL_TIMEOUT_S)

    work = tmp_path / "work"  # outside the repository: nothing is importable from the working tree
    work.mkdir()

    def step(command: str, *args: str | Path, timeout: int = STEP_TIMEOUT_S):
        return _run([bin_dir / command, *args], cwd=work, env=env, timeout=timeout)

    # Non-editable: the package lives in the venv's site-packages, not in the repository or the source copy.
    probe = "import importlib, sys\nfor name in sys.argv[1:]:\n    print(importlib.import_module(name).__file__)"
    where = step("python", "-c", probe, *(f"cifar_edge.{folder}" for folder in SOURCE_FOLDERS))
    installed = [Path(path).resolve() for path in where.stdout.split()]
    assert len(installed) == len(SOURCE_FOLDERS), where.stdout
    for path in installed:
        assert path.is_relative_to(venv.resolve()) and "site-packages" in path.parts, path

    for command in COMMANDS:
        assert (bin_dir / command).is_file(), f"{command} was not installed"
        shown = step(command, "--help", timeout=120)
        assert "Usage" in shown.stdout, f"{command} --help printed no usage:\n{shown.stdout}"

    write_image_folder(work / "data" / "train", per_class=24)
    images = write_image_folder(work / "images", per_class=4, seed=1)
    run_dir = work / "run"
    tiny = ["--model", "seed", "--recipe", "seed", "--epochs", "1", "--batch-size", "16", "--threads", "1"]
    step("cifar-train", "--data", "data", "--cache-dir", "cache", *tiny, "--device", "cpu", "--run-dir", run_dir, "-q")
    for name in ("model.safetensors", "run.json", "checkpoint.pt"):
        assert (run_dir / name).is_file(), f"cifar-train wrote no {name}"

    step("cifar-export", run_dir, "--format", "onnx", "--quiet")
    model = run_dir / "model.onnx"
    assert model.is_file() and (run_dir / "model.onnx.parity.json").is_file()

    inferred = step("cifar-infer", images / "red" / "0000.png", "--model", model, "--json")
    record = json.loads(inferred.stdout.strip().splitlines()[0])
    assert record["label"] in ("red", "green", "blue") and 0.0 <= record["probability"] <= 1.0

    step("cifar-eval", model, "--data", images, "--no-plots", "--quiet")
    evaluation = json.loads((run_dir / "model.onnx.eval" / "eval.json").read_text())
    assert evaluation["images_total"] == 12 and 0.0 <= evaluation["top1_accuracy"] <= 1.0

    rows = ["--providers", "cpu", "--formats", "pytorch,onnx-fp32"]
    step("cifar-bench", run_dir, *rows, "--data", images, "--quick", "--no-cold-start", "--threads", "1", "--quiet")
    assert (run_dir / "bench.md").is_file()
    report = json.loads((run_dir / "bench.json").read_text())
    assert [(row["format"], row["status"]) for row in report["rows"]] == [("PyTorch", "ok"), ("ONNX", "ok")]
