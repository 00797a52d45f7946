"""What a session saves in its run folder: the checkpoint's payload, run.json's record, curves.png's redraws."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cifar_edge.runtime.common.names import CHECKPOINT_FILE, CURVES_PNG
from cifar_edge.train.reporting import write_curves
from cifar_edge.train.run.checkpoint import capture_rng_state, to_cpu, write_checkpoint

if TYPE_CHECKING:
    from cifar_edge.train.session import Session

# curves.png is redrawn after an epoch only when this much time passed since the last drawing (each costs time), and
# always at the end, on Ctrl-C and on failure: long runs get a live plot, tiny runs do not pay for one per epoch.
CURVES_REFRESH_S = 10.0


class Curves:
    """Redraws curves.png from the metrics so far (see CURVES_REFRESH_S)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.drawn_epochs = len(session.metrics) if (session.run_dir / CURVES_PNG).exists() else -1
        self.drawn_at = time.perf_counter()

    def draw(self, force: bool = True) -> None:
        metrics = self.session.metrics
        if not self.session.distributed.is_main or not metrics or len(metrics) == self.drawn_epochs:
            return
        if not force and time.perf_counter() - self.drawn_at < CURVES_REFRESH_S:
            return
        title = f"{self.session.architecture['name']} / {self.session.recipe.name} recipe"
        write_curves(self.session.run_dir / CURVES_PNG, metrics, title=title)
        self.drawn_epochs, self.drawn_at = len(metrics), time.perf_counter()


def save_checkpoint(session: Session, wall_time_s: float) -> None:
    if not session.distributed.is_main:
        return
    trainer, position, totals = session.trainer, session.position, session.totals
    payload = {
        "config": session.config.to_dict(),
        "recipe": session.recipe.to_dict(),
        "contract": session.contract.to_dict(),
        "architecture": session.architecture,
        "model": to_cpu(trainer.model.state_dict()),
        "optimizer": to_cpu(trainer.optimizer.state_dict()),
        "scheduler": trainer.scheduler.state_dict(),
        "weight_average": None if trainer.average is None else to_cpu(trainer.average.state_dict()),
        "lookahead": None if trainer.lookahead is None else to_cpu(trainer.lookahead.state_dict()),
        "soft_targets": None if trainer.soft_targets is None else to_cpu(trainer.soft_targets.state_dict()),
        "position": {"epoch": position.epoch, "step": position.step, "global_step": position.global_step},
        "epoch_totals": {
            "loss_sum": to_cpu(totals.loss_sum),
            "correct": to_cpu(totals.correct),
            "seen": totals.seen,
            "train_seconds": totals.train_seconds,
        },
        "metrics": session.metrics,
        "rng": capture_rng_state(),
        "data": session.data_record,
        "wall_time_s": wall_time_s,
        "train_clock_s": session.clock_s,
        "plan": session.plan,
        "stopped": session.stopped,
        "saved_at": _now(),
    }
    write_checkpoint(session.run_dir / CHECKPOINT_FILE, payload)


def run_record(session: Session, environment: dict[str, Any], wall_time_s: float) -> dict[str, Any]:
    best_val_accuracy, best_epoch, final_val_accuracy = val_summary(session.metrics)
    return {
        "architecture": session.architecture,
        "contract": session.contract.to_dict(),
        "config": session.config.to_dict(),
        "recipe": session.recipe.to_dict(),
        "metrics": {
            "per_epoch": session.metrics,
            "epochs_completed": session.position.epoch,
            "best_val_accuracy": best_val_accuracy,
            "best_epoch": best_epoch,
            "final_val_accuracy": final_val_accuracy,
            "train_images": len(session.train_data),
            "val_images": len(session.val_data),
        },
        "environment": {
            **environment,
            "seed": session.config.seed,
            "wall_time_s": round(wall_time_s, 3),
            "train_clock_s": round(session.clock_s, 3),  # epochs, evaluation and saving: what a budget counts
        },
        "plan": session.plan,  # a budgeted run's measurements, plan and re-plan (budget/plan.py); None = fixed
        "stopped": session.stopped,  # where --stop-after ended the run; None = it ran its schedule
        "data": session.data_record,
        "status": "completed" if session.position.epoch >= session.recipe.epochs else "running",
        "weights": _weights_kind(session),
        "updated_at": _now(),
    }


def _weights_kind(session: Session) -> str:
    """What model.safetensors holds: the EMA copy, the model after lookahead averaging, or the plain model."""
    if session.trainer.average is not None:
        return "weight_average"
    if session.trainer.lookahead is not None and session.trainer.lookahead.average is not None:
        return "lookahead_average"
    return "model"


def val_summary(metrics: list[dict[str, Any]]) -> tuple[float | None, int | None, float | None]:
    """(best per-epoch accuracy of the bare network, its epoch, final accuracy of what the export computes: the
    last epoch's TTA accuracy where the recipe has TTA, else its bare accuracy)."""
    scored = [row for row in metrics if row["val_accuracy"] is not None]
    if not scored:
        return None, None, None
    best = max(scored, key=lambda row: row["val_accuracy"])
    final = scored[-1].get("val_tta_accuracy")
    return best["val_accuracy"], best["epoch"], scored[-1]["val_accuracy"] if final is None else final


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
