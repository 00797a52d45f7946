"""Named training recipes: every knob of a training run that is not about where data or outputs live.

A :class:`Recipe` is plain data, so the values can be tuned (``--set KEY=VALUE`` on the CLI,
``TrainConfig.recipe_overrides`` in Python) without code edits, and the resolved recipe is recorded in run.json.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cifar_edge.train.config import TrainConfig

SCHEDULES = ("constant", "warmup_linear")
NORMALIZATIONS = ("cifar10", "none")
TTA_MODES = ("none", "flip")


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # Input scaling recorded in the contract: "cifar10" = (x/255 - CIFAR mean) / CIFAR std; "none" = x/255 in [0, 1].
    normalization: str = "cifar10"
    epochs: int = 10
    batch_size: int = 64
    # Peak learning rate (reached at the end of warmup).
    lr: float = 0.05
    momentum: float = 0.0
    nesterov: bool = False
    # L2 weight decay on conv/linear weights; also on BatchNorm/bias parameters only if decay_norm_and_bias.
    weight_decay: float = 0.0
    decay_norm_and_bias: bool = False
    # Learning rate multiplier for BatchNorm shifts and biases (they tolerate, and profit from, larger steps).
    bias_lr_scale: float = 1.0
    label_smoothing: float = 0.0
    # "constant", or "warmup_linear": linear ramp from ~0 to lr over warmup_epochs, then linear decay to 0.
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    # Random crop after reflect-padding by this many pixels per side (0 = no crop augmentation).
    crop_padding: int = 0
    # Random horizontal flip of half the training images.
    flip: bool = False
    # Initialise a whitening stem (models with init_whitening) from up to this many normalised training images.
    whitening_images: int = 0
    # Exponential moving average of the weights, updated every step (0 = off). Evaluation and the exported
    # weights then use the averaged model.
    ema_decay: float = 0.0
    # Test-time augmentation at evaluation: "flip" averages the logits of the image and its mirror image;
    # recorded in run.json (architecture.tta) so the export wraps the model the same way.
    tta: str = "none"
    # Print the mean training loss every this many steps (0 = only the per-epoch line).
    log_every: int = 0
    # Images per forward pass at evaluation (no gradients: larger is faster and uses little memory).
    eval_batch_size: int = 1024
    description: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.normalization not in NORMALIZATIONS:
            problems.append(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if self.tta not in TTA_MODES:
            problems.append(f"tta must be one of {TTA_MODES}, got {self.tta!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            problems.append("epochs, batch_size and eval_batch_size must be >= 1")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1 or not 0 <= self.ema_decay < 1:
            problems.append("momentum and ema_decay must be in [0, 1)")
        if self.nesterov and self.momentum == 0:
            problems.append("nesterov needs momentum > 0")
        if self.weight_decay < 0 or self.warmup_epochs < 0 or self.crop_padding < 0 or self.log_every < 0:
            problems.append("weight_decay, warmup_epochs, crop_padding and log_every must be >= 0")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if problems:
            raise ValueError(f"recipe {self.name!r}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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

# Starting values for the CPU-friendly default; the numbers are tuned by hyperparameter search on the real data.
DEFAULT = Recipe(
    name="default",
    model="airnet",
    # Narrower than AirNet's (64, 256, 256): ~620 images/s at batch 512 on the 2-core CPU, so ~12 epochs fit
    # in 20 minutes there; on a GPU widen it with --model-kwargs.
    model_kwargs={"widths": [32, 128, 128]},
    normalization="cifar10",
    epochs=12,
    # Large batches keep the CPU's matrix units busy; BatchNorm statistics are stable at this size.
    batch_size=512,
    lr=0.4,
    momentum=0.9,
    nesterov=True,
    # 5e-4 at batch 512; scale it with batch_size/512 when changing the batch size (decay acts once per step).
    weight_decay=5e-4,
    decay_norm_and_bias=False,
    bias_lr_scale=1.0,
    # Soft targets keep the logits from growing without bound on a short schedule; +~0.5-1% validation accuracy.
    label_smoothing=0.2,
    # Why warmup then linear decay to 0: at step 0 the BatchNorm statistics and momentum buffers are unsettled
    # and a full-size Nesterov step from random weights can blow up, so the rate ramps up over a short warmup;
    # for a short budget that is known in advance, a straight linear decay to 0 gives the best final accuracy
    # (it spends the most steps at a useful rate and ends with small, averaging steps), and unlike
    # step schedules it has no milestones to tune when the epoch count changes.
    schedule="warmup_linear",
    warmup_epochs=1.0,
    crop_padding=2,
    flip=True,
    whitening_images=5000,
    ema_decay=0.0,
    tta="none",
    log_every=0,
    description="AirNet with whitening stem, crop+flip, label smoothing, Nesterov SGD, warmup + linear decay",
)

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (DEFAULT, SEED)}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))}") from None


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
