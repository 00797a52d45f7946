"""--budget on the command line, and which runs get a budget (the default recipe on a CPU only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from cifar_edge.runtime.common.command import ExitCode
from cifar_edge.train import cli
from cifar_edge.train.budget.policy import budget_of, candidate_recipes
from cifar_edge.train.config import TrainConfig, parse_duration
from cifar_edge.train.recipes import AIRBENCH, DEFAULT, SEED

CPU, GPU = torch.device("cpu"), torch.device("cuda")


def _invoke(args: list[str]):
    return CliRunner().invoke(cli.app, args)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("1.5h", 5400), ("600", 600)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_the_default_recipe_has_a_budget_on_a_cpu_only() -> None:
    assert budget_of(TrainConfig(), DEFAULT, CPU) == (
        DEFAULT.cpu_budget_s,
        "the default recipe's CPU budget (cpu_budget_s)",
    )
    assert DEFAULT.cpu_budget_s == 600 and budget_of(TrainConfig(), DEFAULT, GPU)[0] == 0  # a GPU: fixed schedule
    assert budget_of(TrainConfig(recipe="airbench"), AIRBENCH, CPU)[0] == budget_of(TrainConfig(), SEED, CPU)[0] == 0
    for fixed in (TrainConfig(epochs=3), TrainConfig(recipe_overrides={"epochs": 3})):
        assert budget_of(fixed, DEFAULT, CPU)[0] == 0  # a length given is a length kept
    assert budget_of(TrainConfig(budget_s=90), AIRBENCH, GPU) == (90, "--budget")  # --budget applies anywhere


def test_candidates_are_the_recipes_batch_first_and_an_explicit_batch_alone() -> None:
    sizes = [recipe.batch_size for recipe in candidate_recipes(TrainConfig(), DEFAULT, 45_000, 1)]
    assert sizes[0] == DEFAULT.batch_size and sorted(sizes) == sorted(set(DEFAULT.budget_batch_sizes))
    assert [r.batch_size for r in candidate_recipes(TrainConfig(), DEFAULT, 600, 1)] == [512, 256]  # <= the data
    assert [r.batch_size for r in candidate_recipes(TrainConfig(batch_size=64), DEFAULT, 45_000, 1)] == [512]


def test_the_budget_reaches_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    configs: list[TrainConfig] = []
    monkeypatch.setattr(cli, "_train_and_report", lambda config, json_output: configs.append(config) or ExitCode.OK)
    assert _invoke(["--budget", "1h30m"]).exit_code == 0
    assert configs[0].budget_s == 5400
    assert _invoke(["--stop-after", "90s"]).exit_code == ExitCode.USAGE  # removed: bench/budget_curve.py cuts its own
    option = next(param for param in typer.main.get_command(cli.app).params if param.name == "budget")
    assert "(default: 10m for the default recipe on a CPU, none on a GPU;" in option.help


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "10m", "--epochs", "3"], "--budget and --epochs both set the run's length"),
        (["--budget", "10m", "--set", "epochs=3"], "--budget and --set epochs both set the run's length"),
        (["--budget", "ten minutes"], "--budget: expected a duration such as 90s, 10m, 1h or 1h30m"),
        (["--budget", "0s"], "--budget must be > 0 seconds"),
        (["--resume", "runs/latest", "--budget", "10m"], "--budget cannot change"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = _invoke(args)
    assert result.exit_code == ExitCode.USAGE, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_a_budget_too_small_for_one_epoch_exits_2_naming_the_minimum(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    args = ["--data", str(tiny_dataset_dir), "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(tmp_path / "run")]
    result = _invoke([*args, "--recipe", "seed", "--batch-size", "16", "--threads", "1", "--budget", "0.001s", "-q"])
    assert result.exit_code == ExitCode.USAGE, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--budget of 0.001s cannot fit one epoch of 66 images" in lines[0], lines
    assert "the minimum budget is " in lines[0] and not (tmp_path / "run").exists()
