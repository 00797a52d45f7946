"""The one training configuration: every ``cifar-train`` option and every ``fit()`` argument lives here, and the
recipe it resolves to.

Fields left at ``None`` mean "use the recipe's value" (see :mod:`cifar_edge.train.recipes`), so a recipe supplies
its defaults and explicit options override them. Nothing here imports torch: the CLI's ``--help`` stays fast.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from cifar_edge.runtime.common.names import RUNS_DIR
from cifar_edge.train.recipes import Recipe, get_recipe

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
PRECISIONS = ("auto", "bf16", "fp32")
# torch.compile's modes; the two with CUDA graphs replay each training forward and backward as one launch on CUDA.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_COMPILE_MODES = ("reduce-overhead", "max-autotune")
# A duration: 90s, 10m, 1h, 1h30m, 1.5h (hours, minutes, seconds in that order, each optional), or bare seconds.
DURATION_PATTERN = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$")


@dataclass
class TrainConfig:
    # Named recipe (optimizer, schedule, augmentation, contract): "default" (AirNet 32/128/128, the CPU recipe),
    # "airbench" (AirNet 64/256/256 at batch 1024, the GPU recipe) or "seed" (the tutorial).
    recipe: str = "default"
    # Architecture from the model registry; None = the recipe's model.
    model: str | None = None
    # Extra keyword arguments for the architecture (JSON-serialisable; recorded in run.json so export can rebuild
    # it). None = the recipe's kwargs when the model is the recipe's own model, otherwise the architecture's defaults.
    model_kwargs: dict[str, Any] | None = None
    # Passes over the training set; None = recipe value. On --resume a larger value extends the run.
    epochs: int | None = None
    # A wall-clock budget in seconds (--budget 10m): the run times a few optimizer steps first (outside the clock),
    # then plans its steps to end within it (budget/plan.py). None = the recipe's cpu_budget_s on a CPU (the
    # default recipe: 10 minutes), no budget on a GPU. Exclusive with epochs.
    budget_s: float | None = None
    # Images per optimizer step; None = recipe value.
    batch_size: int | None = None
    # Peak learning rate (after warmup); None = recipe value.
    lr: float | None = None
    # Any other Recipe field by name, e.g. {"label_smoothing": 0.1}; recorded so --resume reproduces the run.
    recipe_overrides: dict[str, Any] = field(default_factory=dict)
    # "cifar10" (torchvision download) or the path of an ImageFolder tree (PATH/train/<class>/*).
    data: str = "cifar10"
    # Where CIFAR-10 is downloaded / looked for; None = the data loader's user cache folder.
    data_root: str | None = None
    # Folder for the decoded uint8 cache; None = the data loader's default.
    cache_dir: str | None = None
    # Keep only the first N images of each class (quick experiments); None = all.
    limit_per_class: int | None = None
    # Share of the training images held out for validation when the data has no test/ or val/ folder.
    # 0.1 = 5,000 CIFAR-10 images: +-0.4% accuracy resolution, 90% of the data still trains.
    val_fraction: float = 0.1
    # "auto" = the first CUDA GPU when there is one, else the CPU; or "cpu", "cuda", "cuda:N".
    device: str = "auto"
    # Run folder; None = "<runs_root>/<timestamp>" plus a "<runs_root>/latest" pointer.
    run_dir: str | None = None
    # Parent of the default timestamped run folders.
    runs_root: str = RUNS_DIR
    # A run folder to continue from its checkpoint.pt (its saved config wins; only epochs may grow).
    resume: str | None = None
    # Seeds model init, the validation split, shuffling and augmentation (each epoch's randomness is a pure
    # function of (seed, epoch), which is what makes --resume bit-identical on the CPU).
    seed: int = 0
    # No progress bars, no per-epoch lines (errors still go to stderr).
    quiet: bool = False
    # Arithmetic of the training steps: "bf16" = bfloat16 autocast (weights, optimizer and loss stay float32);
    # "fp32"; "auto" = bf16 where the hardware computes it natively (CUDA GPUs with bf16, CPUs with AVX512-BF16 or
    # AMX: faster than fp32, docs/history.md, 'Precision'), else fp32 (emulated bf16 is usually slower than fp32).
    # The final evaluation runs in float32, so the final validation accuracy is what the float32 export computes.
    precision: str = "auto"
    # torch.compile the model. It compiles during the warm-up, before the epochs' clock; for AirNet the compiled
    # steps have not beaten eager ones so far (docs/history.md, 'torch.compile').
    compile: bool = False
    # torch.compile's mode when compile is on. "reduce-overhead" also captures the compiled forward and backward as
    # CUDA graphs: on a GPU where kernel launches, not arithmetic, set the step time (as for AirNet: docs/history.md,
    # 'GPU'), that is the launches' cost removed; on the CPU it is plain inductor.
    compile_mode: str = "default"
    # CPU threads for torch; None = every core this process may use (measured fastest here), divided among the
    # processes torchrun started on this machine.
    threads: int | None = None
    # Under torchrun: BatchNorm statistics over the whole global batch (SyncBatchNorm, CUDA only) instead of each
    # rank's share. Off by default: per-rank statistics over batch/N images are plenty at batch >= 64 per rank and
    # cost no extra communication.
    sync_batchnorm: bool = False
    # CPU: make glibc's malloc keep freed memory for reuse (environment.tune_malloc): faster training steps
    # (docs/history.md, 'malloc'), at the price of holding the run's peak memory until the process exits.
    tune_malloc: bool = True

    def validate(self) -> None:
        """Raise ValueError with one line naming the bad option."""
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        self._validate_length()
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if not DEVICE_PATTERN.match(self.device):
            raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"--compile-mode must be one of {', '.join(COMPILE_MODES)}, got {self.compile_mode!r}")
        if self.limit_per_class is not None and self.limit_per_class < 1:
            raise ValueError(f"--limit-per-class must be >= 1, got {self.limit_per_class}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if self.model_kwargs is not None and not isinstance(self.model_kwargs, dict):
            raise ValueError("model_kwargs must be a JSON object")
        if not isinstance(self.recipe_overrides, dict):
            raise ValueError("recipe_overrides must be a mapping of Recipe field names to values")
        if self.resume is not None:
            # A resumed run computes what its checkpoint says; only epochs and lr may change (see fit's docs).
            fixed = {
                "--run-dir": self.run_dir,
                "--model": self.model,
                "--model-kwargs": self.model_kwargs,
                "--batch-size": self.batch_size,
                "--set": self.recipe_overrides or None,
                "--limit-per-class": self.limit_per_class,
                "--budget": self.budget_s,
            }
            given = [option for option, value in fixed.items() if value is not None]
            if given:
                raise ValueError(
                    f"--resume continues a run as it was configured; {', '.join(given)} cannot change "
                    "(start a new run instead)"
                )

    def _validate_length(self) -> None:
        """A budget and an explicit length are two answers to one question: refuse the pair."""
        if self.budget_s is not None and not self.budget_s > 0:
            raise ValueError(f"--budget must be > 0 seconds, got {self.budget_s}")
        fixed = ["--epochs"] if self.epochs is not None else []
        if "epochs" in self.recipe_overrides:
            fixed.append("--set epochs")
        if self.budget_s is not None and fixed:
            raise ValueError(f"--budget and {' and '.join(fixed)} both set the run's length; give one of them")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from ``to_dict()`` output; unknown keys (from a newer version) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def parse_duration(text: str, option: str = "--budget") -> float:
    """Seconds in ``text`` ("90s", "10m", "1h", "1h30m", "1.5h" or bare seconds "600"); one-line ValueError else."""
    cleaned = text.strip().lower()
    match = DURATION_PATTERN.match(cleaned)
    if re.fullmatch(r"\d+(?:\.\d+)?", cleaned):
        return float(cleaned)
    if not cleaned or match is None or not any(match.groups()):
        raise ValueError(f"{option}: expected a duration such as 90s, 10m, 1h or 1h30m, got {text!r}")
    parts = (match.group("h"), match.group("m"), match.group("s"))
    return sum(float(value) * unit for value, unit in zip(parts, (3600, 60, 1), strict=True) if value)


def resolve_recipe(config: TrainConfig) -> Recipe:
    """The named recipe with ``config.recipe_overrides`` and the explicit config options applied."""
    recipe = get_recipe(config.recipe)
    recipe = apply_overrides(recipe, config.recipe_overrides)
    explicit: dict[str, Any] = {}
    if config.model is not None and config.model != recipe.model:
        # The recipe's kwargs describe its own architecture; another architecture starts from its defaults.
        explicit["model"] = config.model
        explicit["model_kwargs"] = {}
    if config.model_kwargs is not None:
        explicit["model_kwargs"] = dict(config.model_kwargs)
    for name in ("epochs", "batch_size", "lr"):
        value = getattr(config, name)
        if value is not None:
            explicit[name] = value
    return replace(recipe, **explicit)


def apply_overrides(recipe: Recipe, overrides: dict[str, Any]) -> Recipe:
    """Replace recipe fields by name; values are checked against the field's type (ints may stand for floats)."""
    if not overrides:
        return recipe
    types = {f.name: type(getattr(recipe, f.name)) for f in fields(recipe)}
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in types or key == "name":
            known = ", ".join(sorted(name for name in types if name != "name"))
            raise ValueError(f"unknown recipe field {key!r}; known fields: {known}")
        expected = types[key]
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ValueError(f"recipe field {key!r} needs a {expected.__name__}, got {value!r}")
        values[key] = value
    return replace(recipe, **values)
