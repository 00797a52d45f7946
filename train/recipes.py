"""Named training recipes: every knob of a training run that is not about where data or outputs live.

A :class:`Recipe` is plain data, so the values can be tuned (``--set KEY=VALUE`` on the CLI,
``TrainConfig.recipe_overrides`` in Python) without code edits, and the resolved recipe is recorded in run.json.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from cifar_edge.runtime.model_file import TTA_PASSES

# The values a choice field may take.
SCHEDULES = ("constant", "triangle")
OPTIMIZERS = ("sgd", "muon")
NORMALIZATIONS = ("cifar10", "none")
TTA_MODES = tuple(TTA_PASSES)
FLIP_MODES = ("random", "alternating")


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # Input scaling recorded in the contract: "cifar10" = (x/255 - CIFAR mean) / CIFAR std; "none" = x/255 in [0, 1].
    normalization: str = "cifar10"
    epochs: int = 10
    # A wall-clock budget in seconds for runs on a CPU (0 = none; GPU runs keep the fixed schedule): the run measures
    # its step speed first, then plans its steps to end within it (budget/plan.py), the epoch-counted knobs scaled
    # from ``epochs``, the length this recipe was designed at. --epochs or --set epochs turn it off.
    cpu_budget_s: float = 0.0
    # Batch sizes the budget plan also times besides batch_size (lr and lookahead_every scaled to each; budget/plan.py
    # says when one replaces the recipe's own). Empty = only batch_size.
    budget_batch_sizes: list[int] = field(default_factory=list)
    # A smaller model the budget plan trains instead when this one fits fewer than budget_min_epochs epochs (or none)
    # and the smaller fits no fewer; only when the model was not chosen (--model, --model-kwargs, --set). "" = never.
    budget_smaller_model: str = ""
    budget_min_epochs: float = 3.0
    batch_size: int = 64
    # Peak learning rate of the weights (conv/linear weights, head, biases outside BatchNorm): the schedule's
    # factor 1.0.
    lr: float = 0.05
    momentum: float = 0.0
    nesterov: bool = False
    # Coupled L2 weight decay (torch SGD's weight_decay) on every trainable parameter outside BatchNorm.
    weight_decay: float = 0.0
    # BatchNorm shifts decay too, at weight_decay / bias_lr_scale: their learning rate is bias_lr_scale times
    # larger, so this keeps the shrink per step (lr * weight_decay) equal for both groups. False = no decay on them.
    decay_norm: bool = False
    # "sgd": torch SGD for every parameter. "muon": convolution filters get orthogonalised momentum updates at
    # muon_lr (muon.FilterMuon; airbench94_muon's method), everything else the same SGD as with "sgd".
    optimizer: str = "sgd"
    # Relative step of every filter update (the filters are renormalised each step), scaled by the schedule.
    muon_lr: float = 0.08
    muon_momentum: float = 0.85
    # Learning-rate multiplier for BatchNorm parameters (shifts): with no scale to trade against, a shift needs
    # large steps to move at the pace of the weights it follows (airbench's "bias scaler").
    bias_lr_scale: float = 1.0
    label_smoothing: float = 0.0
    # Learning-rate factor per step: "constant"; "triangle" (linear from lr_start_factor at step 0 up to 1.0 at
    # lr_peak_fraction of the steps, then linear down to lr_end_factor at the last step; lr_peak_fraction 0 = no
    # ramp: linear from 1.0 at step 0 down to lr_end_factor, and lr_start_factor is unused).
    schedule: str = "constant"
    # The triangle's shape, defined here only (LrSchedule reads these). It starts above 0 because a whitened,
    # dirac-initialised net trains from step 0, and ends above 0 because lookahead averaging still profits from small
    # moves at the end; no milestones to re-tune when the epoch count changes.
    lr_start_factor: float = 0.2
    lr_peak_fraction: float = 0.23
    lr_end_factor: float = 0.07
    # Random crop after reflect-padding by this many pixels per side (0 = no crop augmentation).
    crop_padding: int = 0
    # Horizontal flip augmentation, as flip_mode says: "random" = a fresh coin per image and epoch; "alternating" =
    # a seeded coin per image, inverted on odd epochs, so every image is seen both ways every two epochs.
    flip: bool = False
    flip_mode: str = "random"
    # Initialise a whitening stem (models with init_whitening) from up to this many normalised training images.
    whitening_images: int = 0
    # The whitening stem's bias trains for this many epochs, then is frozen (0 = it trains throughout).
    whiten_bias_epochs: int = 0
    # Lookahead averaging (0 = off): from epoch index average_start_epoch on, every lookahead_every steps the model
    # is pulled into a slow average and continues from it (see optim.LookaheadAverage for the formula with
    # lookahead_decay and lookahead_power).
    lookahead_every: int = 0
    lookahead_decay: float = 0.95
    lookahead_power: float = 3.0
    average_start_epoch: int = 0
    # Test-time augmentation at evaluation: "flip" averages the logits of the image and its mirror image (2 forward
    # passes); "flip_shift" also averages flipped pairs shifted by one pixel (6 passes; see tta.FlipShiftAverage).
    # Recorded in run.json (architecture.tta) so the export wraps the model the same way.
    tta: str = "none"
    # Print the mean training loss every this many steps (0 = only the per-epoch line).
    log_every: int = 0
    # Images per forward pass at evaluation (no gradients: larger is faster and uses little memory).
    eval_batch_size: int = 1024
    # Score the validation set after every this many epochs (a mid-run monitor in the training precision) and always
    # after the last (float32, with TTA: the run's result). 1 = every epoch.
    eval_every: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        problems = _choice_problems(self) + _range_problems(self)
        if problems:
            raise ValueError(f"recipe {self.name!r}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """Rebuild from ``to_dict()`` output (a checkpoint's recipe); one-line ValueError for unknown fields."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            # A checkpoint is a mid-run state: one written by a version with other knobs resumes with that version.
            raise ValueError(
                f"recipe has fields this version does not know (saved by another version?): {', '.join(unknown)}"
            )
        return cls(**{key: value for key, value in data.items() if key in known})


def _choice_problems(recipe: Recipe) -> list[str]:
    choices = {
        "optimizer": OPTIMIZERS,
        "schedule": SCHEDULES,
        "normalization": NORMALIZATIONS,
        "tta": TTA_MODES,
        "flip_mode": FLIP_MODES,
    }
    return [
        f"{name} must be one of {allowed}, got {getattr(recipe, name)!r}"
        for name, allowed in choices.items()
        if getattr(recipe, name) not in allowed
    ]


def _range_problems(recipe: Recipe) -> list[str]:
    """Every numeric field of ``recipe`` out of its range, one phrase each."""
    problems = []
    if not recipe.muon_lr > 0 or not 0 <= recipe.muon_momentum < 1:
        problems.append("muon_lr must be > 0 and muon_momentum in [0, 1)")
    if not 0 <= recipe.lr_peak_fraction < 1 or recipe.lr_start_factor < 0 or recipe.lr_end_factor < 0:
        problems.append("lr_peak_fraction must be in [0, 1) and lr_start_factor, lr_end_factor >= 0")
    if recipe.lookahead_every < 0 or recipe.average_start_epoch < 0 or recipe.whiten_bias_epochs < 0:
        problems.append("lookahead_every, average_start_epoch and whiten_bias_epochs must be >= 0")
    if not 0 < recipe.lookahead_decay <= 1 or recipe.lookahead_power < 0:
        problems.append("lookahead_decay must be in (0, 1] and lookahead_power >= 0")
    if not recipe.bias_lr_scale > 0:
        problems.append(f"bias_lr_scale must be > 0, got {recipe.bias_lr_scale}")
    if not recipe.cpu_budget_s >= 0:
        problems.append(f"cpu_budget_s must be >= 0, got {recipe.cpu_budget_s}")
    batches = recipe.budget_batch_sizes
    if not all(isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in batches):
        problems.append(f"budget_batch_sizes must be a list of integers >= 1, got {batches!r}")
    if not recipe.budget_min_epochs >= 0:
        problems.append(f"budget_min_epochs must be >= 0, got {recipe.budget_min_epochs}")
    if recipe.epochs < 1 or recipe.batch_size < 1 or recipe.eval_batch_size < 1 or recipe.eval_every < 1:
        problems.append("epochs, batch_size, eval_batch_size and eval_every must be >= 1")
    if not recipe.lr > 0:
        problems.append(f"lr must be > 0, got {recipe.lr}")
    if not 0 <= recipe.momentum < 1:
        problems.append(f"momentum must be in [0, 1), got {recipe.momentum}")
    if recipe.nesterov and recipe.momentum == 0:
        problems.append("nesterov needs momentum > 0")
    if recipe.weight_decay < 0 or recipe.crop_padding < 0 or recipe.log_every < 0:
        problems.append("weight_decay, crop_padding and log_every must be >= 0")
    if not 0 <= recipe.label_smoothing < 1:
        problems.append(f"label_smoothing must be in [0, 1), got {recipe.label_smoothing}")
    return problems


# The original tutorial, reproduced: no normalisation, no augmentation, plain SGD, constant learning rate.
# The one deliberate difference: the training set is shuffled every epoch (the tutorial iterated in file order,
# which feeds whole runs of one class in a row and trains worse).
SEED = Recipe(
    name="seed",
    model="seed",
    normalization="none",
    epochs=10,
    batch_size=64,
    lr=0.05,
    log_every=100,
    description="the original tutorial CNN and training loop (plus shuffling)",
)

# The CPU default: airbench94's training method at half width with airbench94_muon's filter optimizer, sized to
# train in under 10 minutes on a 2-core CPU with native bf16, tuned on the shared JPEG copy of CIFAR-10. Its measured
# accuracy and time, seed by seed, and the experiments behind each value: docs/history.md and docs/training.md.
DEFAULT = Recipe(
    name="default",
    model="airnet",
    # Half of AirNet's (64, 256, 256), the size menu's airnet-m: about 4x less compute per image for a little
    # accuracy at equal epochs; width is the main CPU lever (docs/history.md, 'Width'). On a GPU: the airbench recipe.
    model_kwargs={"widths": [32, 128, 128]},
    # The epochs that fill the 10-minute CPU budget on 45,000 training images (docs/history.md, 'Epochs'): the length
    # the epoch-counted knobs below were tuned at, and the fixed schedule on a GPU.
    epochs=18,
    # On a CPU the run is planned to 10 minutes instead, on whatever data and machine (it supersedes the former
    # 810,000-image cap, which sized the epochs to this machine by proxy; docs/training.md, 'Time budget').
    cpu_budget_s=600.0,
    # The batch sizes around 512 that trained at about its img/s here (docs/training.md): timed, rarely chosen.
    budget_batch_sizes=[256, 512, 1024],
    # Under 3 epochs of this net the size menu's smallest did as well in the same minutes, at a third of the cost
    # per image (docs/training.md, 'The size menu').
    budget_smaller_model="airnet-s",
    # Large batches keep the CPU's matrix units busy and BatchNorm statistics stable; 88 steps per epoch.
    batch_size=512,
    # airbench94's hyperparameters (lr 11.5 and wd 0.0153 per 1024 examples, decoupled; momentum 0.85; bias
    # scaler 64) rewritten for a mean-reduced loss at batch 512 and torch SGD's coupled weight decay.
    lr=0.75,
    # 0.85 rather than the usual 0.9: with Nesterov at this large a step the shorter memory is steadier.
    momentum=0.85,
    nesterov=True,
    # lr * weight_decay = 0.001 x schedule: the fraction every weight shrinks per step.
    weight_decay=0.00133,
    # Convolution filters: orthogonalised momentum updates (muon.FilterMuon, airbench94_muon's method). Its lr 0.24
    # and momentum 0.6 were set for batch 2000; at batch 512 (4x the steps) a smaller step and a longer momentum won
    # (docs/history.md, 'Muon').
    optimizer="muon",
    muon_lr=0.08,
    muon_momentum=0.85,
    # BatchNorm shifts step 64x faster and decay at weight_decay / 64, so they shrink per step like the weights.
    decay_norm=True,
    bias_lr_scale=64.0,
    # Soft targets keep the logits from growing without bound on a short schedule.
    label_smoothing=0.2,
    # Triangle, with the Recipe's default shape (see lr_start_factor above).
    schedule="triangle",
    # Translate by -2..2 pixels (reflect padding, random crop): CIFAR's objects are centred to within a few pixels.
    crop_padding=2,
    # Alternating flip: every image is seen both ways every two epochs, which random flips do not guarantee in a
    # short budget (a random 50% coin leaves ~1/4 of the images unflipped, or flipped, over two epochs).
    flip=True,
    flip_mode="alternating",
    whitening_images=5000,
    # The whitening stem's weights stay frozen at the data's statistics; its bias helps early (it re-centres the
    # patches while the network settles) and is then frozen so it stops drifting once the net has adapted to it.
    whiten_bias_epochs=3,
    # Lookahead averaging from the 4th epoch on, every 5 steps, at the Recipe's default decay and power: averages out
    # the noise of the large-step Nesterov updates as the learning rate anneals.
    lookahead_every=5,
    average_start_epoch=3,
    # One pass per image in the export: an edge device pays for every pass, and flip + shift TTA buys about a point
    # for 6x the cost (docs/training.md, 'One pass'). The run still scores every view; cifar-export --tta flip or
    # flip_shift bakes one in.
    tta="none",
    # The mid-run monitor every 3rd epoch (epochs 3, 6, ..., 18): a pass over the validation images every epoch would
    # spend a noticeable share of the budget; this keeps a curve (docs/history.md, 'Validation monitor').
    eval_every=3,
    description="AirNet 32/128/128 with whitening stem, alternating flip + crop, label smoothing 0.2, Muon for the "
    "filters and Nesterov SGD for the rest (bias lr x64), triangle schedule, lookahead averaging, one-pass export",
)

# The GPU recipe: airbench94's method at its full width (64, 256, 256) and batch 1024. Its hyperparameters (lr 11.5
# and wd 0.0153 per 1024 examples, decoupled, sum-reduced loss; momentum 0.85; bias scaler 64) rewritten for a
# mean-reduced loss at batch 1024: lr 1.5 (twice the default's, for twice the batch), weight_decay 0.00133 (so
# lr * wd = 0.002 per step: the default's shrink per image), SGD for the filters too (the method airbench94 was
# measured with), 10 epochs. Everything else as in the default (airbench94's flip + shift TTA: --tta flip_shift). Its
# measurements on a GPU (and on the CPU): docs/history.md, 'GPU'.
AIRBENCH = replace(
    DEFAULT,
    name="airbench",
    model_kwargs={"widths": [64, 256, 256]},
    batch_size=1024,
    lr=1.5,
    weight_decay=0.00133,
    optimizer="sgd",
    epochs=10,
    cpu_budget_s=0.0,  # a GPU recipe: on the CPU too it trains its fixed 10 epochs unless given --budget
    budget_batch_sizes=[],
    budget_smaller_model="airnet-m",  # its net is airnet-l: under --budget on a CPU, a short budget moves down one size
    description="AirNet 64/256/256 at batch 1024 (airbench94's method, for a GPU): whitening stem, alternating "
    "flip + crop, label smoothing 0.2, Nesterov SGD (bias lr x64), triangle schedule, lookahead averaging, "
    "one-pass export",
)

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (DEFAULT, SEED, AIRBENCH)}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))}") from None
