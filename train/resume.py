"""Continuing a run from its checkpoint: the effective options, then the saved state put back in place."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cifar_edge.train.budget.plan import current_total_steps
from cifar_edge.train.config import TrainConfig
from cifar_edge.train.optim.groups import parameter_groups
from cifar_edge.train.optim.schedule import LrSchedule
from cifar_edge.train.recipes import Recipe
from cifar_edge.train.run.checkpoint import restore_rng_state
from cifar_edge.train.state import EpochTotals, Position

if TYPE_CHECKING:
    from cifar_edge.train.session import Session


def resumed_config(
    config: TrainConfig, saved: dict[str, Any], run_dir: Path
) -> tuple[TrainConfig, Recipe, dict[str, Any] | None]:
    """(the effective config, the recipe and the budget plan, if any) of a run continued from checkpoint ``saved``."""
    recipe = Recipe.from_dict(saved["recipe"])
    plan = saved.get("plan")  # a budgeted run continues its recorded plan: nothing is measured again
    done = saved["position"]["epoch"]
    if config.epochs is not None:
        if config.epochs < done:
            raise ValueError(f"--epochs {config.epochs}: {run_dir} has already completed {done} epochs")
        recipe = replace(recipe, epochs=config.epochs)
        if plan is not None:  # --epochs ends the plan: the epochs still to come are whole ones (restore)
            plan = {**plan, "extended": {"epochs": config.epochs}}
    if config.lr is not None:  # e.g. to continue a diverged run from its last good checkpoint more gently
        recipe = replace(recipe, lr=config.lr)
    if done >= recipe.epochs:
        raise ValueError(f"{run_dir} already completed its {done} epochs; pass --epochs N (> {done}) to train further")
    saved_config = TrainConfig.from_dict(saved["config"])
    # Only how and where to compute may change on resume (plus the epoch count and the peak learning rate);
    # what is computed comes from the checkpoint.
    effective = replace(
        saved_config,
        epochs=recipe.epochs,
        lr=recipe.lr if config.lr is not None else saved_config.lr,
        device=config.device,
        precision=config.precision,
        threads=config.threads,
        tune_malloc=config.tune_malloc,
        compile=config.compile,
        compile_mode=config.compile_mode,
        quiet=config.quiet,
        run_dir=str(run_dir),
        resume=None,
    )
    return effective, recipe, plan


def restore(session: Session, saved: dict[str, Any], schedule: LrSchedule) -> None:
    """Put the checkpoint's state into a freshly built session: weights, optimizer, schedule, averages, position."""
    trainer = session.trainer
    trainer.model.load_state_dict(saved["model"])
    trainer.optimizer.load_state_dict(saved["optimizer"])
    trainer.scheduler.load_state_dict(saved["scheduler"])
    # --epochs may have grown and --lr changed: stretch the schedule over the new total, re-derive the base and
    # current rates from the recipe (the same arithmetic as a fresh start, so unchanged values stay bit-identical).
    _restore_plan(session, saved, schedule)
    schedule.total_steps = trainer.run_steps(len(session.train_data))
    base_lrs = [group["lr"] for group in parameter_groups(trainer.model, session.recipe)]
    trainer.scheduler.base_lrs = base_lrs
    for group, base_lr in zip(trainer.optimizer.param_groups, base_lrs, strict=True):
        group["initial_lr"] = base_lr
        group["lr"] = base_lr * schedule(trainer.scheduler.last_epoch)
    if trainer.average is not None and saved.get("weight_average") is not None:
        trainer.average.load_state_dict(saved["weight_average"])
    if trainer.lookahead is not None and saved.get("lookahead") is not None:
        trainer.lookahead.load_state_dict(saved["lookahead"], trainer.device)
    if trainer.soft_targets is not None and saved.get("soft_targets") is not None:
        trainer.soft_targets.load_state_dict(saved["soft_targets"])
    position = saved["position"]
    session.position = Position(position["epoch"], position["step"], position["global_step"])
    totals = saved["epoch_totals"]
    session.totals = EpochTotals(totals["loss_sum"], totals["correct"], totals["seen"], totals["train_seconds"])
    session.metrics = list(saved["metrics"])
    session.previous_wall_time_s = float(saved["wall_time_s"])
    session.previous_clock_s = session.clock_s = float(saved.get("train_clock_s", 0.0))
    session.stopped = saved.get("stopped")
    session.data_record = {**saved["data"], "summary": session.data_record["summary"]}
    restore_rng_state(saved["rng"])


def _restore_plan(session: Session, saved: dict[str, Any], schedule: LrSchedule) -> None:
    """A budgeted run's length: as planned (or re-planned); after --epochs N, the steps of its completed epochs plus
    whole epochs up to N, on the plain schedule stretched over them (as any extended run's)."""
    plan, trainer = session.plan, session.trainer
    if plan is None:
        return
    trainer.total_steps = current_total_steps(plan)
    extended = plan.get("extended")
    if extended is not None:
        position = saved["position"]
        completed = position["global_step"] - position["step"]  # every step of the epochs done
        epochs_left = extended["epochs"] - position["epoch"]
        trainer.total_steps = extended["total_steps"] = completed + epochs_left * trainer.steps_per_epoch(
            len(session.train_data)
        )
        schedule.replanned_at = -1
