"""``fit(config)``: one training run from options to a self-describing run folder.

The run folder holds ``checkpoint.pt`` (full state, for --resume), ``model.safetensors`` + ``run.json`` (what
``cifar-export`` reads), ``metrics.csv`` and ``curves.png``; all of them are rewritten atomically after every epoch.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cifar_edge.runtime.common.names import CHECKPOINT_FILE, CURVES_PNG, METRICS_CSV, RUN_JSON, WEIGHTS_FILE
from cifar_edge.train.budget.clock import RunClock
from cifar_edge.train.budget.policy import plan_summary
from cifar_edge.train.config import TrainConfig
from cifar_edge.train.distributed import any_rank, broadcast_object, launched_as_worker
from cifar_edge.train.environment import describe_environment
from cifar_edge.train.interrupts import StopRequest
from cifar_edge.train.recipes import TTA_MODES
from cifar_edge.train.reporting import Reporter, write_metrics_csv
from cifar_edge.train.run.files import save_model_files
from cifar_edge.train.run.folder import new_run_dir, point_latest
from cifar_edge.train.saving import Curves, run_record, save_checkpoint, val_summary
from cifar_edge.train.session import Session, close_session, open_session
from cifar_edge.train.state import EpochTotals, NonFiniteLossError, StepEvent

if TYPE_CHECKING:
    from cifar_edge.train.data.load import Splits


@dataclass(frozen=True)
class FitResult:
    run_dir: Path
    checkpoint: Path
    weights: Path
    run_json: Path
    metrics_csv: Path
    curves_png: Path
    metrics: list[dict[str, Any]]  # one dict per epoch (see reporting.METRIC_COLUMNS)
    best_val_accuracy: float | None  # best epoch's, without TTA; None when there is no validation set
    best_epoch: int | None
    final_val_accuracy: float | None  # of what the export computes: the final weights, with the recipe's TTA
    epochs: int
    wall_time_s: float  # training wall time over all sessions of the run (resumes included)
    device: str
    rank: int = 0  # under torchrun: this process's rank (only rank 0 wrote the run folder)
    train_clock_s: float = 0.0  # the training clock (what a --budget counts: epochs, evaluation, saving), all sessions

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` summary."""
        return {
            "status": "completed",
            "run_dir": str(self.run_dir),
            "checkpoint": str(self.checkpoint),
            "weights": str(self.weights),
            "run_json": str(self.run_json),
            "metrics_csv": str(self.metrics_csv),
            "curves_png": str(self.curves_png),
            "best_val_accuracy": self.best_val_accuracy,
            "best_epoch": self.best_epoch,
            "final_val_accuracy": self.final_val_accuracy,
            "final_train_loss": self.metrics[-1]["train_loss"] if self.metrics else None,
            "epochs": self.epochs,
            "wall_time_s": round(self.wall_time_s, 3),
            "train_clock_s": round(self.train_clock_s, 3),
            "device": self.device,
        }


class TrainingFailed(RuntimeError):
    """Training diverged (NaN/Inf loss); the last good checkpoint was left untouched. CLI exit code 1."""

    def __init__(self, message: str, run_dir: Path | None, global_step: int) -> None:
        super().__init__(message)
        self.run_dir, self.global_step = run_dir, global_step


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C: the current step finished and a checkpoint was saved. CLI exit code 130."""

    def __init__(self, run_dir: Path, global_step: int) -> None:
        self.run_dir, self.global_step = run_dir, global_step
        self.resume_command = f"cifar-train --resume {shlex.quote(str(run_dir))}"
        super().__init__(f"interrupted after step {global_step}; checkpoint saved; resume with: {self.resume_command}")


def fit(
    config: TrainConfig,
    splits: Splits | None = None,
    *,
    on_step: Callable[[StepEvent], None] | None = None,
    reporter: Reporter | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> FitResult:
    """Train as ``config`` says and return the run's paths and metrics.

    ``splits``: prepared data (tests, benchmarks); None loads it with ``load_splits`` from the config's data
    options. ``on_step`` is called after every optimizer step. ``clock``: what a time budget and --stop-after are
    measured by (tests pass a fake one). Raises ValueError (bad options, data or run folder; a budget that fits
    no epoch), TrainingFailed (non-finite loss) or TrainingInterrupted (Ctrl-C, after saving a checkpoint).

    Under ``torchrun`` every process calls ``fit`` with the same arguments: they train one model together
    (DistributedDataParallel, see :mod:`cifar_edge.train.distributed`), only rank 0 prints and writes the run
    folder, and every rank returns the same result.
    """
    reporter = reporter or Reporter(quiet=config.quiet or launched_as_worker())
    session_start = time.perf_counter()
    session = open_session(config, splits, reporter, clock)
    try:
        return _train(session, session_start, reporter, on_step, RunClock(session, clock, reporter))
    finally:
        close_session(session)


def _train(
    session: Session,
    session_start: float,
    reporter: Reporter,
    on_step: Callable[[StepEvent], None] | None,
    run_clock: RunClock,
) -> FitResult:
    _open_run_dir(session)
    environment = describe_environment(session.trainer.device, session.trainer.precision)
    environment["malloc_tuned"] = session.malloc_tuned
    _announce(session, environment, reporter)

    def wall_time() -> float:
        return session.previous_wall_time_s + time.perf_counter() - session_start

    if session.config.compile or session.trainer.device.type == "cuda":
        # torch.compile's compilations and cuDNN's algorithm search happen here, not inside the timed epochs.
        warm_up_started = time.perf_counter()
        session.trainer.warm_up(session.train_data, session.position.epoch)
        environment["warm_up_seconds"] = round(time.perf_counter() - warm_up_started, 3)
        reporter.line(f"warmed up in {environment['warm_up_seconds']:.1f} s (outside the epochs' training seconds)")
    run_clock.start()
    _run_epochs(session, environment, wall_time, reporter, run_clock.step_hook(on_step), run_clock)
    return replace(_result(session, wall_time()), train_clock_s=run_clock.elapsed())


def _open_run_dir(session: Session) -> None:
    """Pick (rank 0, for a fresh run) and create the run folder; every rank learns it and records it."""
    writes = session.distributed.is_main  # under torchrun only rank 0 touches the run folder
    if session.run_dir is None and writes:
        session.run_dir = new_run_dir(session.config.runs_root)
        point_latest(session.config.runs_root, session.run_dir)
    chosen = None if session.run_dir is None else str(session.run_dir)
    session.run_dir = Path(broadcast_object(chosen, session.distributed))  # rank 0's choice, on every rank
    if writes:
        session.run_dir.mkdir(parents=True, exist_ok=True)
    session.config = replace(session.config, run_dir=str(session.run_dir))


def _announce(session: Session, environment: dict[str, Any], reporter: Reporter) -> None:
    recipe, position = session.recipe, session.position
    verb = "resuming" if position.epoch or position.step else "training"
    processes = session.distributed.world_size
    workers = f", x {processes} processes" if processes > 1 else ""
    reporter.line(
        f"{verb} {session.architecture['name']} ({recipe.name} recipe) on {environment['device_name']} "
        f"[{environment['device']}, {environment['precision']}, {session.threads} threads{workers}]: "
        f"{len(session.train_data)} train / "
        f"{len(session.val_data)} val images, {recipe.epochs} epochs -> {session.run_dir}"
    )
    if session.plan is not None:
        reporter.line(f"plan: {plan_summary(session.plan)}; {session.plan['reason']}")


def _run_epochs(
    session: Session,
    environment: dict[str, Any],
    wall_time: Callable[[], float],
    reporter: Reporter,
    on_step: Callable[[StepEvent], None] | None,
    run_clock: RunClock,
) -> None:
    """Train the remaining epochs; a NaN/Inf loss raises TrainingFailed, Ctrl-C TrainingInterrupted (saved).
    The run's length may change on the way (a re-plan, --stop-after): session.recipe.epochs is read afresh."""
    position = session.position

    def announce_stop() -> None:
        reporter.progress_console.print("Ctrl-C: finishing this step and saving a checkpoint (again to abort)")

    curves = Curves(session)
    with StopRequest(on_first_signal=announce_stop) as stop:
        while position.epoch < session.recipe.epochs:
            epoch_started = time.perf_counter()
            run_clock.start_epoch()
            try:
                completed = session.trainer.train_epoch(
                    session.train_data,
                    position,
                    session.totals,
                    reporter,
                    on_step=on_step,
                    stop_requested=lambda: stop.requested,
                )
            except NonFiniteLossError as error:
                curves.draw()
                raise _failure(session, error) from None
            if not completed:
                session.clock_s = run_clock.elapsed()
                save_checkpoint(session, wall_time())
                curves.draw()
                raise TrainingInterrupted(session.run_dir, position.global_step)
            run_clock.finish_if_stopped()
            _finish_epoch(session, environment, epoch_started, wall_time, reporter, run_clock)
            last = position.epoch >= session.recipe.epochs
            if any_rank(stop.requested, session.distributed, session.trainer.device) and not last:
                curves.draw()
                raise TrainingInterrupted(session.run_dir, position.global_step)
            curves.draw(force=last)


def _finish_epoch(
    session: Session,
    environment: dict[str, Any],
    epoch_started: float,
    wall_time: Callable[[], float],
    reporter: Reporter,
    run_clock: RunClock,
) -> None:
    trainer, totals, position, recipe = session.trainer, session.totals, session.position, session.recipe
    # Every eval_every epochs the bare network is scored (one pass; mid-run in the training precision, a
    # monitor); the last epoch scores in float32, bare and with every TTA mode, so the run says what each export
    # choice buys. TTA costs 2-6 passes: too dear for every epoch of a 10-minute budget.
    final = position.epoch + 1 >= recipe.epochs
    val_loss, val_accuracy = None, None
    if final or (position.epoch + 1) % recipe.eval_every == 0:  # the recipe's monitor interval (eval_every)
        val_loss, val_accuracy = trainer.evaluate(session.val_data, in_training_precision=not final)
    views = [mode for mode in TTA_MODES if mode != "none"] if final else []
    by_tta = {mode: trainer.evaluate(session.val_data, mode)[1] for mode in views}
    seconds, wall_time_s = time.perf_counter() - epoch_started, wall_time()  # training + evaluation
    seen = max(1, totals.seen)
    row = {
        "epoch": position.epoch + 1,
        "train_loss": totals.loss_sum.item() / seen,
        "train_accuracy": totals.correct.item() / seen,
        "val_loss": val_loss,
        "val_accuracy": val_accuracy,
        "val_tta_accuracy": by_tta.get(recipe.tta),  # what the recipe's default export computes
        "val_flip_accuracy": by_tta.get("flip"),
        "val_flip_shift_accuracy": by_tta.get("flip_shift"),
        "lr": trainer.last_lr if trainer.last_lr is not None else trainer.optimizer.param_groups[0]["lr"],
        "seconds": round(seconds, 3),
        "train_seconds": round(totals.train_seconds, 3),  # in the optimizer steps alone (no evaluation or saving)
        "train_images_per_second": round(totals.seen / max(totals.train_seconds, 1e-9), 1),
        "elapsed_seconds": round(wall_time_s, 3),
    }
    session.metrics.append(row)
    position.epoch, position.step = position.epoch + 1, 0
    run_clock.end_epoch()  # the clock; a planned run that slowed down re-plans its rest here, once
    session.totals = EpochTotals()
    save_checkpoint(session, wall_time_s)
    if session.distributed.is_main:
        save_model_files(session.run_dir, trainer.evaluation_model(), run_record(session, environment, wall_time_s))
        write_metrics_csv(session.run_dir / METRICS_CSV, session.metrics)
    reporter.epoch_summary(row, session.recipe.epochs)


def _failure(session: Session, error: NonFiniteLossError) -> TrainingFailed:
    checkpoint = session.run_dir / CHECKPOINT_FILE
    if checkpoint.exists():
        kept = f"the last good checkpoint ({checkpoint}, after epoch {session.position.epoch}) is unchanged"
    else:
        kept = "no checkpoint had been saved yet"
    message = f"training diverged: {error}; {kept}. Try a lower --lr"
    return TrainingFailed(message, session.run_dir, error.global_step)


def _result(session: Session, wall_time_s: float) -> FitResult:
    run_dir = session.run_dir
    best_val_accuracy, best_epoch, final_val_accuracy = val_summary(session.metrics)
    return FitResult(
        run_dir=run_dir,
        checkpoint=run_dir / CHECKPOINT_FILE,
        weights=run_dir / WEIGHTS_FILE,
        run_json=run_dir / RUN_JSON,
        metrics_csv=run_dir / METRICS_CSV,
        curves_png=run_dir / CURVES_PNG,
        metrics=list(session.metrics),
        best_val_accuracy=best_val_accuracy,
        best_epoch=best_epoch,
        final_val_accuracy=final_val_accuracy,
        epochs=session.position.epoch,
        wall_time_s=wall_time_s,
        device=str(session.trainer.device),
        rank=session.distributed.rank,
    )
