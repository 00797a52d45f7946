"""``cifar-train``: parse options into a TrainConfig, call ``fit``, map the outcome to an exit code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cifar_edge.runtime.common.atomic_io import WriteError, check_writable
from cifar_edge.runtime.common.command import ExitCode, default_of, describe_exit_codes, first_line, run_command
from cifar_edge.runtime.common.names import (
    CHECKPOINT_FILE,
    CURVES_PNG,
    LATEST_LINK,
    METRICS_CSV,
    RUN_JSON,
    WEIGHTS_FILE,
)
from cifar_edge.runtime.model_file import latest_run_dir
from cifar_edge.train import options as opt
from cifar_edge.train.config import TrainConfig, parse_duration
from cifar_edge.train.recipes import DEFAULT

if TYPE_CHECKING:
    from cifar_edge.train.fit import FitResult

EPILOG = describe_exit_codes(
    {
        ExitCode.OK: "trained",
        ExitCode.FAILED: "training failed (NaN/Inf loss; the last good checkpoint is kept)",
        ExitCode.USAGE: "usage, data or run-folder error (one line on stderr)",
        ExitCode.WRITE_FAILED: "the run folder cannot be written (checked before training; the last checkpoint is "
        "kept)",
        ExitCode.INTERRUPTED: "interrupted by Ctrl-C (a checkpoint was saved and the resume command printed)",
    }
) + (
    " Recipes: 'default' (AirNet 32/128/128 with a whitening stem, Muon for the filters and Nesterov SGD for the "
    f"rest, triangle schedule, lookahead averaging, a one-pass export: on a CPU planned to a "
    f"{DEFAULT.cpu_budget_s / 60:g}-minute budget, on a GPU {DEFAULT.epochs} epochs), "
    "'airbench' (airbench94's SGD method at full width 64/256/256, batch 1024: for a GPU) and "
    "'seed' (the original tutorial CNN and its plain SGD loop). "
    "See docs/training.md for every recipe field and why. "
    "Several processes or GPUs: torchrun --nproc-per-node N $(which cifar-train) ... (DistributedDataParallel; "
    "--batch-size is the global batch, split evenly over the processes; only rank 0 writes the run folder)."
)


def _default(name: str) -> Any:
    return default_of(TrainConfig, name)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
def train(
    model: opt.Model = _default("model"),
    model_kwargs: opt.ModelKwargs = _default("model_kwargs"),
    recipe: opt.Recipe = _default("recipe"),
    epochs: opt.Epochs = _default("epochs"),
    budget: opt.Budget = _default("budget_s"),
    stop_after: opt.StopAfter = _default("stop_after_s"),
    batch_size: opt.BatchSize = _default("batch_size"),
    lr: opt.Lr = _default("lr"),
    recipe_settings: opt.RecipeSettings = [],  # typer's default, never mutated  # noqa: B006
    data: opt.Data = _default("data"),
    data_root: opt.DataRoot = _default("data_root"),
    cache_dir: opt.CacheDir = _default("cache_dir"),
    limit_per_class: opt.LimitPerClass = _default("limit_per_class"),
    val_fraction: opt.ValFraction = _default("val_fraction"),
    device: opt.Device = _default("device"),
    run_dir: opt.RunDir = _default("run_dir"),
    resume: opt.Resume = _default("resume"),
    seed: opt.Seed = _default("seed"),
    quiet: opt.Quiet = _default("quiet"),
    json_output: opt.JsonOutput = False,
    precision: opt.Precision = _default("precision"),
    compile_model: opt.Compile = _default("compile"),
    compile_mode: opt.CompileMode = None,
    threads: opt.Threads = _default("threads"),
    sync_bn: opt.SyncBn = _default("sync_batchnorm"),
    tune_malloc: opt.TuneMalloc = _default("tune_malloc"),
) -> None:
    """Train an image classifier on CIFAR-10 or your own ImageFolder and write a self-describing run folder."""
    config = _config(**locals())  # first statement: locals() is exactly the options, by parameter name
    raise typer.Exit(_run(config, json_output))


def _config(
    *,
    model_kwargs: str | None,
    budget: str | None,
    stop_after: str | None,
    recipe_settings: list[str],
    quiet: bool,
    json_output: bool,
    compile_model: bool,
    compile_mode: str | None,
    sync_bn: bool,
    **fields: Any,
) -> TrainConfig:
    """The validated TrainConfig of train's options: those named here are parsed or renamed, ``fields`` pass as is.

    An invalid value prints the usage error (and its JSON with --json) and exits with ExitCode.USAGE.
    """
    try:
        config = TrainConfig(
            **fields,
            model_kwargs=_json_object(model_kwargs, "--model-kwargs") if model_kwargs is not None else None,
            budget_s=None if budget is None else parse_duration(budget, "--budget"),
            stop_after_s=None if stop_after is None else parse_duration(stop_after, "--stop-after"),
            recipe_overrides=_settings(recipe_settings),
            quiet=quiet or json_output,
            compile=compile_model or compile_mode is not None,
            compile_mode=compile_mode or "default",
            sync_batchnorm=sync_bn,
        )
        config.validate()
    except ValueError as error:
        _fail(ExitCode.USAGE, str(error), json_output)
    return config


def _run(config: TrainConfig, json_output: bool) -> int:
    from cifar_edge.train.fit import TrainingFailed, TrainingInterrupted, fit

    try:
        check_run_destination(config)
        result = fit(config)
    except TrainingInterrupted as interrupted:
        message = f"interrupted after step {interrupted.global_step}; checkpoint saved in {interrupted.run_dir}"
        extra = {"run_dir": str(interrupted.run_dir), "resume_command": interrupted.resume_command}
        _report(ExitCode.INTERRUPTED, f"{message}\nresume with: {interrupted.resume_command}", json_output, extra)
        return ExitCode.INTERRUPTED
    except KeyboardInterrupt:
        # Ctrl-C before training started, or a second Ctrl-C that aborts without saving.
        _report(ExitCode.INTERRUPTED, "interrupted; nothing new was saved", json_output)
        return ExitCode.INTERRUPTED
    except TrainingFailed as failed:
        extra = {"run_dir": None if failed.run_dir is None else str(failed.run_dir), "step": failed.global_step}
        _report(ExitCode.FAILED, str(failed), json_output, extra)
        return ExitCode.FAILED
    except WriteError as error:  # a run folder that cannot take its files; the last checkpoint written is intact
        _report(ExitCode.WRITE_FAILED, str(error), json_output)
        return ExitCode.WRITE_FAILED
    except (ValueError, OSError) as error:  # DataError, ContractError, CheckpointError are ValueErrors
        _report(ExitCode.USAGE, first_line(error, limit=None), json_output)
        return ExitCode.USAGE
    if result.rank != 0:  # under torchrun, rank 0 speaks for the run
        return ExitCode.OK
    if json_output:
        typer.echo(json.dumps(result.to_dict(), sort_keys=True, allow_nan=False))
    elif not config.quiet:
        typer.echo(f"done in {result.wall_time_s:.0f}s: {_accuracy_summary(result)}; {result.run_dir}")
    return ExitCode.OK


def check_run_destination(config: TrainConfig) -> None:
    """WriteError before any data is decoded when the run folder (or where it would be created) cannot be written."""
    if config.resume:
        folder = Path(config.resume)
        if folder.name == LATEST_LINK and folder.is_file():  # the text pointer left where symlinks fail
            folder = latest_run_dir(folder.parent) or folder.parent
    else:
        folder = Path(config.run_dir) if config.run_dir else Path(config.runs_root)
    names = (CHECKPOINT_FILE, WEIGHTS_FILE, RUN_JSON, METRICS_CSV, CURVES_PNG)
    check_writable(folder, files=[folder / name for name in names], create=False)


def _accuracy_summary(result: FitResult) -> str:
    """The final validation accuracy of what the default export computes, then what the other views score."""
    if result.final_val_accuracy is None:
        return "no validation set"
    final_row = result.metrics[-1]
    views = [(name, final_row.get(f"val_{name}_accuracy")) for name in ("flip", "flip_shift")]
    others = ", ".join(f"{name} TTA {100 * value:.2f}%" for name, value in views if value is not None)
    if final_row.get("val_tta_accuracy") is None:
        summary = f"val acc {100 * result.final_val_accuracy:.2f}% in 1 pass"
    else:
        bare = final_row["val_accuracy"]
        summary = f"val acc {100 * result.final_val_accuracy:.2f}% with TTA ({100 * bare:.2f}% in 1 pass)"
    return f"{summary}; {others}" if others else summary


def _settings(items: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        key, separator, text = item.partition("=")
        if not separator or not key:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
        try:
            overrides[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key.strip()] = text  # bare words are strings: --set tta=flip
    return overrides


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{option}: not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option}: expected a JSON object, got {text!r}")
    return value


def _report(code: int, message: str, json_output: bool, extra: dict[str, Any] | None = None) -> None:
    status = {ExitCode.FAILED: "failed", ExitCode.INTERRUPTED: "interrupted"}.get(code, "error")
    prefix = "" if code == ExitCode.INTERRUPTED else "error: "
    typer.echo(f"cifar-train: {prefix}{message}", err=True)
    if json_output:
        typer.echo(
            json.dumps({"status": status, "exit_code": code, "message": message, **(extra or {})}, allow_nan=False)
        )


def _fail(code: int, message: str, json_output: bool) -> None:
    _report(code, message, json_output)
    raise typer.Exit(code)


def main() -> None:
    """Console entry point (``cifar-train``); Ctrl-C during training itself is handled by fit (checkpoint, resume)."""
    run_command(app, "cifar-train: interrupted before training started; nothing was written", command="cifar-train")


if __name__ == "__main__":  # python -m cifar_edge.train.cli, and torchrun -m cifar_edge.train.cli
    main()
