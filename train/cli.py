"""``cifar-train``: parse options into a TrainConfig, call ``fit``, map the outcome to an exit code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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


# The options' declarations (type, flags, help); their defaults are TrainConfig's (_default).
Model = Annotated[
    str | None,
    typer.Option(
        help="Architecture: airnet-s, airnet-m or airnet-l (the size menu), airnet (widths from --model-kwargs) or "
        "seed. (default: the recipe's)"
    ),
]
ModelKwargs = Annotated[
    str | None,
    typer.Option("--model-kwargs", help="Architecture arguments as JSON, e.g. '{\"widths\": [64, 256, 256]}'."),
]
RecipeName = Annotated[str, typer.Option(help="Training recipe: default (CPU), airbench (GPU) or seed.")]
Epochs = Annotated[int | None, typer.Option(help="Epochs to train (on --resume: extend to this many).")]
Budget = Annotated[
    str | None,
    typer.Option(
        "--budget",
        metavar="DURATION",
        help="Train to a wall-clock budget (90s, 10m, 1h30m): a few timed steps first (outside the clock), then the "
        f"steps that fit. (default: {DEFAULT.cpu_budget_s / 60:g}m for the default recipe on a CPU, none on a GPU; "
        "--epochs fixes the length instead)",
    ),
]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Images per step. (default: the recipe's)")]
Lr = Annotated[
    float | None,
    typer.Option(help="Peak learning rate of the weights (BatchNorm shifts: x bias_lr_scale). (default: the recipe's)"),
]
RecipeSettings = Annotated[
    list[str],
    typer.Option(
        "--set", metavar="FIELD=VALUE", help="Override any recipe field, e.g. --set label_smoothing=0.1 (repeat)."
    ),
]
Data = Annotated[str, typer.Option(help="'cifar10' (downloaded) or an ImageFolder path (PATH/train/<class>/).")]
DataRoot = Annotated[str | None, typer.Option("--data-root", help="Where CIFAR-10 lives or is downloaded to.")]
CacheDir = Annotated[str | None, typer.Option("--cache-dir", help="Folder for the decoded-image cache.")]
LimitPerClass = Annotated[
    int | None,
    typer.Option("--limit-per-class", help="Use only the first N images of each class (quick experiments)."),
]
ValFraction = Annotated[float, typer.Option("--val-fraction", help="Share of train held out when there is no val/.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
RunDir = Annotated[str | None, typer.Option("--run-dir", help="Run folder. (default: runs/<timestamp> + runs/latest)")]
Resume = Annotated[str | None, typer.Option("--resume", metavar="RUN_DIR", help="Continue a run from its checkpoint.")]
Seed = Annotated[int, typer.Option(help="Seed for init, validation split, shuffling and augmentation.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or per-epoch lines.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout (implies --quiet).")]
Precision = Annotated[
    str,
    typer.Option(help="Training arithmetic: auto (bf16 where the GPU/CPU has it natively, else fp32), bf16 or fp32."),
]
Compile = Annotated[
    bool,
    typer.Option("--compile/--no-compile", help="torch.compile the model (compiled in the warm-up, before the clock)."),
]
CompileMode = Annotated[
    str | None,
    typer.Option(
        "--compile-mode",
        help="torch.compile mode (implies --compile): default, reduce-overhead (CUDA graphs on a GPU), max-autotune "
        "or max-autotune-no-cudagraphs.",
    ),
]
Threads = Annotated[int | None, typer.Option(help="CPU threads. (default: all cores, shared by torchrun's processes)")]
SyncBn = Annotated[
    bool,
    typer.Option("--sync-bn/--no-sync-bn", help="Under torchrun on CUDA: BatchNorm statistics over the global batch."),
]
TuneMalloc = Annotated[
    bool,
    typer.Option(
        "--tune-malloc/--no-tune-malloc",
        help="CPU, glibc: keep freed memory for reuse instead of page-faulting it back every step.",
    ),
]


def _default(name: str) -> Any:
    return default_of(TrainConfig, name)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
def train(
    model: Model = _default("model"),
    model_kwargs: ModelKwargs = _default("model_kwargs"),
    recipe: RecipeName = _default("recipe"),
    epochs: Epochs = _default("epochs"),
    budget: Budget = _default("budget_s"),
    batch_size: BatchSize = _default("batch_size"),
    lr: Lr = _default("lr"),
    recipe_settings: RecipeSettings = [],  # typer's default, never mutated  # noqa: B006
    data: Data = _default("data"),
    data_root: DataRoot = _default("data_root"),
    cache_dir: CacheDir = _default("cache_dir"),
    limit_per_class: LimitPerClass = _default("limit_per_class"),
    val_fraction: ValFraction = _default("val_fraction"),
    device: Device = _default("device"),
    run_dir: RunDir = _default("run_dir"),
    resume: Resume = _default("resume"),
    seed: Seed = _default("seed"),
    quiet: Quiet = _default("quiet"),
    json_output: JsonOutput = False,
    precision: Precision = _default("precision"),
    compile_model: Compile = _default("compile"),
    compile_mode: CompileMode = None,
    threads: Threads = _default("threads"),
    sync_bn: SyncBn = _default("sync_batchnorm"),
    tune_malloc: TuneMalloc = _default("tune_malloc"),
) -> None:
    """Train an image classifier on CIFAR-10 or your own ImageFolder and write a self-describing run folder."""
    config = _config(**locals())  # first statement: locals() is exactly the options, by parameter name
    raise typer.Exit(_train_and_report(config, json_output))


def _config(
    *,
    model_kwargs: str | None,
    budget: str | None,
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


def _train_and_report(config: TrainConfig, json_output: bool) -> int:
    from cifar_edge.train.fit import TrainingFailed, TrainingInterrupted, fit

    try:
        check_run_destination(config)
        result = fit(config)
    except TrainingInterrupted as interrupted:
        message = f"interrupted after step {interrupted.global_step}; checkpoint saved in {interrupted.run_dir}"
        extra: dict[str, Any] = {"run_dir": str(interrupted.run_dir), "resume_command": interrupted.resume_command}
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
    statuses: dict[int, str] = {ExitCode.FAILED: "failed", ExitCode.INTERRUPTED: "interrupted"}
    status = statuses.get(code, "error")
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
