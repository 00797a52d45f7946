"""A training session: the run's live state (trainer, data, position, metrics, clocks, plan), what it saves in its
run folder (checkpoint.pt's payload, run.json's record) and how a resumed run puts a checkpoint back.

prepare.py builds a session from options; fit.py drives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cifar_edge.runtime.contract import Contract
from cifar_edge.train.budget.plan import Extension, Plan
from cifar_edge.train.checkpoint import capture_rng_state, restore_rng_state, to_cpu
from cifar_edge.train.config import TrainConfig
from cifar_edge.train.distributed import DistributedContext
from cifar_edge.train.loop import Trainer
from cifar_edge.train.recipes import Recipe
from cifar_edge.train.state import DeviceData, EpochTotals, Position


@dataclass(frozen=True)
class ValSummary:
    """What the run's validation scores come to (all None without a validation set)."""

    best_accuracy: float | None  # the best epoch's, of the bare network
    best_epoch: int | None
    final_accuracy: float | None  # of what the export computes: the last epoch's TTA accuracy, else its bare one


@dataclass
class Session:
    config: TrainConfig  # effective: what run.json records and --resume restores
    contract: Contract
    architecture: dict[str, Any]
    data_record: dict[str, Any]  # {"spec": load_splits kwargs or None, "summary": splits.description}
    trainer: Trainer
    train_data: DeviceData
    val_data: DeviceData
    run_dir: Path | None  # None until training starts (a fresh run's folder is created late: nothing empty is left)
    position: Position = field(default_factory=Position)
    totals: EpochTotals = field(default_factory=EpochTotals)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    previous_wall_time_s: float = 0.0  # spent by earlier sessions of a resumed run
    threads: int = 1
    malloc_tuned: bool = False  # environment.tune_malloc took effect in this process
    distributed: DistributedContext = field(default_factory=DistributedContext)  # torchrun's rank and world
    plan: Plan | None = None  # a budgeted run's plan (budget/plan.py); None = fixed length
    clock_s: float = 0.0  # the training clock at the last epoch's end, all sessions (budget/clock.py)
    previous_clock_s: float = 0.0  # the training clock's seconds in earlier sessions of a resumed run
    speeds: dict[str, Any] = field(default_factory=dict)  # the budget clock's recent epoch speeds (RunClock.speeds)

    @property
    def recipe(self) -> Recipe:
        """The resolved recipe, every knob's actual value (the trainer's: a re-plan changes its epochs)."""
        return self.trainer.recipe

    def val_summary(self) -> ValSummary:
        scored = [row for row in self.metrics if row["val_accuracy"] is not None]
        if not scored:
            return ValSummary(None, None, None)
        best = max(scored, key=lambda row: row["val_accuracy"])
        final = scored[-1].get("val_tta_accuracy")
        return ValSummary(best["val_accuracy"], best["epoch"], scored[-1]["val_accuracy"] if final is None else final)

    def checkpoint_payload(self, wall_time_s: float) -> dict[str, Any]:
        """checkpoint.pt's content: everything --resume needs to continue bit-identically."""
        position, totals = self.position, self.totals
        return {
            "config": self.config.to_dict(),
            "recipe": self.recipe.to_dict(),
            "contract": self.contract.to_dict(),
            "architecture": self.architecture,
            **self.trainer.state_dict(),
            "position": {"epoch": position.epoch, "step": position.step, "global_step": position.global_step},
            "epoch_totals": {
                "loss_sum": to_cpu(totals.loss_sum),
                "correct": to_cpu(totals.correct),
                "seen": totals.seen,
                "train_seconds": totals.train_seconds,
            },
            "metrics": self.metrics,
            "rng": capture_rng_state(),
            "data": self.data_record,
            "wall_time_s": wall_time_s,
            "train_clock_s": self.clock_s,
            "clock_speeds": self.speeds,
            "plan": None if self.plan is None else self.plan.record(),
            "saved_at": _now(),
        }

    def run_record(self, environment: dict[str, Any], wall_time_s: float) -> dict[str, Any]:
        """run.json's content besides the weights' hash (run_folder.save_model_files adds it)."""
        summary = self.val_summary()
        lookahead = self.trainer.lookahead
        return {
            "architecture": self.architecture,
            "contract": self.contract.to_dict(),
            "config": self.config.to_dict(),
            "recipe": self.recipe.to_dict(),
            "metrics": {
                "per_epoch": self.metrics,
                "epochs_completed": self.position.epoch,
                "best_val_accuracy": summary.best_accuracy,
                "best_epoch": summary.best_epoch,
                "final_val_accuracy": summary.final_accuracy,
                "train_images": len(self.train_data),
                "val_images": len(self.val_data),
            },
            "environment": {
                **environment,
                "seed": self.config.seed,
                "wall_time_s": round(wall_time_s, 3),
                "train_clock_s": round(self.clock_s, 3),  # epochs, evaluation and saving: what a budget counts
            },
            "plan": None if self.plan is None else self.plan.record(),  # a budgeted run's measurements and plan
            "data": self.data_record,
            "status": "completed" if self.position.epoch >= self.recipe.epochs else "running",
            # What model.safetensors holds: the model after lookahead averaging, or the plain model.
            "weights": "lookahead_average" if lookahead is not None and lookahead.average is not None else "model",
            "updated_at": _now(),
        }

    def restore(self, saved: dict[str, Any]) -> None:
        """Put checkpoint ``saved``'s state into this freshly built session: the trainer's (weights, optimizer,
        schedule, average), the position, the epoch's sums, the metrics and the clocks."""
        plain_schedule = self.plan is None or self.plan.extended is not None
        self.trainer.load_state_dict(saved, len(self.train_data), plain_schedule)
        position = saved["position"]
        self.position = Position(position["epoch"], position["step"], position["global_step"])
        totals = saved["epoch_totals"]
        self.totals = EpochTotals(totals["loss_sum"], totals["correct"], totals["seen"], totals["train_seconds"])
        self.metrics = list(saved["metrics"])
        self.previous_wall_time_s = float(saved["wall_time_s"])
        self.previous_clock_s = self.clock_s = float(saved.get("train_clock_s", 0.0))
        self.speeds = dict(saved.get("clock_speeds", {}))
        self.data_record = {**saved["data"], "summary": self.data_record["summary"]}
        restore_rng_state(saved["rng"])


def resumed_config(
    config: TrainConfig, saved: dict[str, Any], run_dir: Path
) -> tuple[TrainConfig, Recipe, Plan | None]:
    """(the effective config, the recipe and the budget plan, if any) of a run continued from checkpoint ``saved``."""
    recipe = Recipe.from_dict(saved["recipe"])
    # A budgeted run continues its recorded plan: nothing is measured again.
    plan = None if saved.get("plan") is None else Plan.from_record(saved["plan"])
    done = saved["position"]["epoch"]
    if config.epochs is not None:
        if config.epochs < done:
            raise ValueError(f"--epochs {config.epochs}: {run_dir} has already completed {done} epochs")
        recipe = replace(recipe, epochs=config.epochs)
        if plan is not None:  # --epochs ends the plan: the epochs still to come are whole ones
            plan = replace(plan, extended=Extension(config.epochs))
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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
