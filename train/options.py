"""``cifar-train``'s option declarations (type, flags, help); their defaults are TrainConfig's, set in cli.py."""

from __future__ import annotations

from typing import Annotated

import typer

from cifar_edge.train.recipes import DEFAULT

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
Recipe = Annotated[str, typer.Option(help="Training recipe: default (CPU), airbench (GPU) or seed.")]
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
StopAfter = Annotated[
    str | None,
    typer.Option(
        "--stop-after",
        metavar="DURATION",
        help="Stop when the training clock passes DURATION, schedule unchanged, and score those weights.",
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
