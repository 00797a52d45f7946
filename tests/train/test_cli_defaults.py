"""cifar-train's options default to TrainConfig's fields, and what an option or --set names wins."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cifar_edge.runtime.common.command import ExitCode
from cifar_edge.train import cli
from cifar_edge.train.config import TrainConfig, resolve_recipe
from cifar_edge.train.recipes import get_recipe


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[TrainConfig]:
    """The TrainConfig each invocation would train, instead of training it."""
    configs: list[TrainConfig] = []

    def record(config: TrainConfig, json_output: bool) -> int:
        configs.append(config)
        return ExitCode.OK

    monkeypatch.setattr(cli, "_train_and_report", record)
    return configs


def _invoke(args: list[str]) -> None:
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output


def test_no_options_give_the_config_defaults(captured: list[TrainConfig]) -> None:
    _invoke([])
    assert captured == [TrainConfig()]


def test_an_option_and_a_set_override_win_over_the_recipe(captured: list[TrainConfig]) -> None:
    default = get_recipe("default")
    _invoke(["--epochs", str(default.epochs + 1), "--set", f"label_smoothing={default.label_smoothing / 2}"])
    recipe = resolve_recipe(captured[0])
    assert recipe.epochs == default.epochs + 1 and recipe.label_smoothing == default.label_smoothing / 2
    assert recipe.lr == default.lr  # what no option names keeps the recipe's value
