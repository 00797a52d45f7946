"""The values a Recipe may take, and the check of one (kept apart so recipes.py holds the recipes themselves)."""

from __future__ import annotations

from typing import Any

from cifar_edge.runtime.passes import TTA_PASSES

SCHEDULES = ("constant", "warmup_linear", "triangle")
OPTIMIZERS = ("sgd", "muon")
NORMALIZATIONS = ("cifar10", "none")
TTA_MODES = tuple(TTA_PASSES)
FLIP_MODES = ("random", "alternating")
DISTILL_MODES = ("none", "temporal", "flip", "ema")


def recipe_problems(recipe: Any) -> list[str]:
    """Every field of ``recipe`` (a Recipe) out of its range, one phrase each; empty when it is usable."""
    problems = _choice_problems(recipe)
    if not recipe.muon_lr > 0 or not 0 <= recipe.muon_momentum < 1:
        problems.append("muon_lr must be > 0 and muon_momentum in [0, 1)")
    if not 0 <= recipe.lr_peak_fraction < 1 or recipe.lr_start_factor < 0 or recipe.lr_end_factor < 0:
        problems.append("lr_peak_fraction must be in [0, 1) and lr_start_factor, lr_end_factor >= 0")
    if recipe.lookahead_every < 0 or recipe.average_start_epoch < 0 or recipe.whiten_bias_epochs < 0:
        problems.append("lookahead_every, average_start_epoch and whiten_bias_epochs must be >= 0")
    if not 0 < recipe.lookahead_decay <= 1 or recipe.lookahead_power < 0:
        problems.append("lookahead_decay must be in (0, 1] and lookahead_power >= 0")
    if recipe.lookahead_every and recipe.ema_decay:
        problems.append("choose one weight average: ema_decay or lookahead_every")
    if not recipe.bias_lr_scale > 0:
        problems.append(f"bias_lr_scale must be > 0, got {recipe.bias_lr_scale}")
    if recipe.max_train_images < 0:
        problems.append(f"max_train_images must be >= 0, got {recipe.max_train_images}")
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
    if not 0 <= recipe.momentum < 1 or not 0 <= recipe.ema_decay < 1:
        problems.append("momentum and ema_decay must be in [0, 1)")
    if recipe.nesterov and recipe.momentum == 0:
        problems.append("nesterov needs momentum > 0")
    if recipe.weight_decay < 0 or recipe.warmup_epochs < 0 or recipe.crop_padding < 0 or recipe.log_every < 0:
        problems.append("weight_decay, warmup_epochs, crop_padding and log_every must be >= 0")
    if not 0 <= recipe.label_smoothing < 1:
        problems.append(f"label_smoothing must be in [0, 1), got {recipe.label_smoothing}")
    if not 0 <= recipe.distill_weight <= 1 or not 0 <= recipe.distill_start <= 1:
        problems.append("distill_weight and distill_start must be in [0, 1]")
    if not 0 <= recipe.distill_momentum < 1 or not 0 <= recipe.distill_ema_decay < 1:
        problems.append("distill_momentum and distill_ema_decay must be in [0, 1)")
    return problems


def _choice_problems(recipe: Any) -> list[str]:
    choices = {
        "optimizer": OPTIMIZERS,
        "schedule": SCHEDULES,
        "normalization": NORMALIZATIONS,
        "tta": TTA_MODES,
        "flip_mode": FLIP_MODES,
        "distill": DISTILL_MODES,
    }
    return [
        f"{name} must be one of {allowed}, got {getattr(recipe, name)!r}"
        for name, allowed in choices.items()
        if getattr(recipe, name) not in allowed
    ]
