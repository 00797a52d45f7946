"""``cifar-train``: parse options into a TrainConfig, call ``fit``, map the outcome to an exit code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cifar_edge.runtime.atomic_io import WriteError, check_writable
from cifar_edge.runtime.defaults import default_of
from cifar_edge.runtime.entry import run_command
from cifar_edge.runtime.errors import ExitCode, describe_exit_codes, first_line
from cifar_edge.runtime.layout import CHECKPOINT_FILE, CURVES_PNG, LATEST_LINK, METRICS_CSV, RUN_JSON, WEIGHTS_FILE
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
    f"rest, triangle schedule, lookahead averaging, flip + shift TTA: on a CPU planned to a "
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
    model: str | None = typer.Option(_default("model"), help="Architecture: airnet or seed. (default: the recipe's)"),
    model_kwargs: str | None = typer.Option(
        _default("model_kwargs"),
        "--model-kwargs",
        help="Architecture arguments as JSON, e.g. '{\"widths\": [64, 256, 256]}'.",
    ),
    recipe: str = typer.Option(_default("recipe"), help="Training recipe: default (CPU), airbench (GPU) or seed."),
    epochs: int | None = typer.Option(_default("epochs"), help="Epochs to train (on --resume: extend to this many)."),
    budget: str | None = typer.Option(
        _default("budget_s"),
        "--budget",
        metavar="DURATION",
        help="Train to a wall-clock budget (90s, 10m, 1h30m): a few timed steps first (outside the clock), then the "
        f"steps that fit. (default: {DEFAULT.cpu_budget_s / 60:g}m for the default recipe on a CPU, none on a GPU; "
        "--epochs fixes the length instead)",
    ),
    stop_after: str | None = typer.Option(
        _default("stop_after_s"),
        "--stop-after",
        metavar="DURATION",
        help="Stop when the training clock passes DURATION, schedule unchanged, and score those weights.",
    ),
    batch_size: int | None = typer.Option(
        _default("batch_size"), "--batch-size", help="Images per step. (default: the recipe's)"
    ),
    lr: float | None = typer.Option(
        _default("lr"),
        help="Peak learning rate of the weights (BatchNorm shifts: x bias_lr_scale). (default: the recipe's)",
    ),
    recipe_settings: list[str] = typer.Option(
        [], "--set", metavar="FIELD=VALUE", help="Override any recipe field, e.g. --set label_smoothing=0.1 (repeat)."
    ),
    data: str = typer.Option(
        _default("data"), help="'cifar10' (downloaded) or an ImageFolder path (PATH/train/<class>/)."
    ),
    data_root: str | None = typer.Option(
        _default("data_root"), "--data-root", help="Where CIFAR-10 lives or is downloaded to."
    ),
    cache_dir: str | None = typer.Option(
        _default("cache_dir"), "--cache-dir", help="Folder for the decoded-image cache."
    ),
    limit_per_class: int | None = typer.Option(
        _default("limit_per_class"),
        "--limit-per-class",
        help="Use only the first N images of each class (quick experiments).",
    ),
    val_fraction: float = typer.Option(
        _default("val_fraction"), "--val-fraction", help="Share of train held out when there is no val/."
    ),
    device: str = typer.Option(_default("device"), help="auto, cpu, cuda or cuda:N."),
    run_dir: str | None = typer.Option(
        _default("run_dir"), "--run-dir", help="Run folder. (default: runs/<timestamp> + runs/latest)"
    ),
    resume: str | None = typer.Option(
        _default("resume"), "--resume", metavar="RUN_DIR", help="Continue a run from its checkpoint."
    ),
    seed: int = typer.Option(_default("seed"), help="Seed for init, validation split, shuffling and augmentation."),
    quiet: bool = typer.Option(_default("quiet"), "--quiet", "-q", help="No progress bars or per-epoch lines."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout (implies --quiet)."),
    precision: str = typer.Option(
        _default("precision"),
        help="Training arithmetic: auto (bf16 where the GPU/CPU has it natively, else fp32), bf16 or fp32.",
    ),
    compile_model: bool = typer.Option(
        _default("compile"),
        "--compile/--no-compile",
        help="torch.compile the model (compiled in the warm-up, before the clock).",
    ),
    compile_mode: str | None = typer.Option(
        None,
        "--compile-mode",
        help="torch.compile mode (implies --compile): default, reduce-overhead (CUDA graphs on a GPU), max-autotune "
        "or max-autotune-no-cudagraphs.",
    ),
    threads: int | None = typer.Option(
        _default("threads"), help="CPU threads. (default: all cores, shared by torchrun's processes)"
    ),
    sync_bn: bool = typer.Option(
        _default("sync_batchnorm"),
        "--sync-bn/--no-sync-bn",
        help="Under torchrun on CUDA: BatchNorm statistics over the global batch.",
    ),
    tune_malloc: bool = typer.Option(
        _default("tune_malloc"),
        "--tune-malloc/--no-tune-malloc",
        help="CPU, glibc: keep freed memory for reuse instead of page-faulting it back every step.",
    ),
) -> None:
    """Train an image classifier on CIFAR-10 or your own ImageFolder and write a self-describing run folder."""
    try:
        config = TrainConfig(
            recipe=recipe,
            model=model,
            model_kwargs=_json_object(model_kwargs, "--model-kwargs") if model_kwargs is not None else None,
            epochs=epochs,
            budget_s=None if budget is None else parse_duration(budget, "--budget"),
            stop_after_s=None if stop_after is None else parse_duration(stop_after, "--stop-after"),
            batch_size=batch_size,
            lr=lr,
            recipe_overrides=_settings(recipe_settings),
            data=data,
            data_root=data_root,
            cache_dir=cache_dir,
            limit_per_class=limit_per_class,
            val_fraction=val_fraction,
            device=device,
            run_dir=run_dir,
            resume=resume,
            seed=seed,
            quiet=quiet or json_output,
            precision=precision,
            compile=compile_model or compile_mode is not None,
            compile_mode=compile_mode or "default",
            threads=threads,
            sync_batchnorm=sync_bn,
            tune_malloc=tune_malloc,
        )
        config.validate()
    except ValueError as error:
        _fail(ExitCode.USAGE, str(error), json_output)
    raise typer.Exit(_run(config, json_output))


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
    """The final validation accuracy of what the export computes, and without TTA when the recipe has it."""
    if result.final_val_accuracy is None:
        return "no validation set"
    final_row = result.metrics[-1]
    if final_row.get("val_tta_accuracy") is None:
        return f"val acc {100 * result.final_val_accuracy:.2f}%"
    return f"val acc {100 * result.final_val_accuracy:.2f}% with TTA ({100 * final_row['val_accuracy']:.2f}% without)"


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
