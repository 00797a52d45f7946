"""``fit(config)``: one training run from options to a self-describing run folder, epoch by epoch.

The run folder holds ``checkpoint.pt`` (full state, for --resume), ``model.safetensors`` + ``run.json`` (what
``cifar-export`` reads), ``metrics.csv`` and ``curves.png``; all of them are rewritten atomically after every epoch.
Ctrl-C asks the loop to stop after the current step: it saves a checkpoint and raises TrainingInterrupted (exit 130).
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
from cifar_edge.train.budget.plan import Replan
from cifar_edge.train.checkpoint import write_checkpoint
from cifar_edge.train.config import TrainConfig
from cifar_edge.train.distributed import any_rank, launched_as_worker, main_decides
from cifar_edge.train.environment import StopRequest, describe_environment
from cifar_edge.train.prepare import close_session, open_session
from cifar_edge.train.reporting import Curves, Reporter, write_metrics_csv
from cifar_edge.train.run_folder import new_run_dir, point_latest, save_model_files
from cifar_edge.train.session import Session
from cifar_edge.train.state import EpochTotals, NonFiniteLossError, StepEvent
from cifar_edge.train.tta import VIEWS

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
    options. ``on_step`` is called after every optimizer step. ``clock``: what a time budget is measured by (tests
    pass a fake one). Raises ValueError (bad options, data or run folder; a budget that fits no epoch),
    TrainingFailed (non-finite loss) or TrainingInterrupted (Ctrl-C, after saving a checkpoint).

    Under ``torchrun`` every process calls ``fit`` with the same arguments: they train one model together
    (DistributedDataParallel, see :mod:`cifar_edge.train.distributed`), only rank 0 prints and writes the run
    folder, and every rank returns the same result.
    """
    reporter = reporter or Reporter(quiet=config.quiet or launched_as_worker())
    session_start = time.perf_counter()
    session = open_session(config, splits, reporter, clock)
    try:
        run_clock = RunClock(clock, session.previous_clock_s, session.distributed, reporter, session.speeds)
        return _Epochs(session, reporter, run_clock, session_start).train(on_step)
    finally:
        close_session(session)


@dataclass
class _Epochs:
    """One session's epochs, from the warm-up to the result: what every part of the run reads from one place."""

    session: Session
    reporter: Reporter
    clock: RunClock
    started: float  # this session's start (time.perf_counter)

    def wall_time(self) -> float:
        """Training wall time over all sessions of the run."""
        return self.session.previous_wall_time_s + time.perf_counter() - self.started

    def train(self, on_step: Callable[[StepEvent], None] | None) -> FitResult:
        session, trainer = self.session, self.session.trainer
        run_dir = _open_run_dir(session)
        environment = describe_environment(trainer.device, trainer.precision)
        environment["malloc_tuned"] = session.malloc_tuned
        self._announce(environment)
        if session.config.compile or trainer.device.type == "cuda":
            # torch.compile's compilations and cuDNN's algorithm search happen here, not inside the timed epochs.
            warm_up_started = time.perf_counter()
            trainer.warm_up(session.train_data, session.position.epoch)
            environment["warm_up_seconds"] = round(time.perf_counter() - warm_up_started, 3)
            self.reporter.line(
                f"warmed up in {environment['warm_up_seconds']:.1f} s (outside the epochs' training seconds)"
            )
        self.clock.start()
        self._run_epochs(run_dir, environment, self._step_hook(on_step))
        return replace(_result(session, run_dir, self.wall_time()), train_clock_s=self.clock.elapsed())

    def _step_hook(self, on_step: Callable[[StepEvent], None] | None) -> Callable[[StepEvent], None]:
        """The loop's on_step: the clock reads the time (and at its checks may re-plan the run), then the caller's
        ``on_step`` runs."""
        session = self.session

        def after_step(event: StepEvent) -> None:
            replanned = self.clock.after_step(
                trainer=session.trainer,
                plan=session.plan,
                position=session.position,
                seen=session.totals.seen,
                train_images=len(session.train_data),
            )
            self._record_replan(replanned)
            if on_step is not None:
                on_step(event)

        return after_step

    def _record_replan(self, replanned: Replan | None) -> None:
        if replanned is not None and self.session.plan is not None:
            self.session.plan = replace(self.session.plan, replans=(*self.session.plan.replans, replanned))

    def _announce(self, environment: dict[str, Any]) -> None:
        session = self.session
        recipe, position = session.recipe, session.position
        verb = "resuming" if position.epoch or position.step else "training"
        processes = session.distributed.world_size
        workers = f", x {processes} processes" if processes > 1 else ""
        self.reporter.line(
            f"{verb} {session.architecture['name']} ({recipe.name} recipe) on {environment['device_name']} "
            f"[{environment['device']}, {environment['precision']}, {session.threads} threads{workers}]: "
            f"{len(session.train_data)} train / "
            f"{len(session.val_data)} val images, {recipe.epochs} epochs -> {session.run_dir}"
        )
        if session.plan is not None:
            self.reporter.line(f"plan: {session.plan.summary()}; {session.plan.reason}")

    def _run_epochs(
        self, run_dir: Path, environment: dict[str, Any], on_step: Callable[[StepEvent], None] | None
    ) -> None:
        """Train the remaining epochs; a NaN/Inf loss raises TrainingFailed, Ctrl-C TrainingInterrupted (saved).
        The run's length may change on the way (a re-plan): session.recipe.epochs is read afresh."""
        session, trainer = self.session, self.session.trainer
        position = session.position
        title = f"{session.architecture['name']} / {session.recipe.name} recipe"
        curves = Curves(run_dir / CURVES_PNG, title, session.distributed.is_main, len(session.metrics))

        def announce_stop() -> None:
            self.reporter.progress_console.print("Ctrl-C: finishing this step and saving a checkpoint (again to abort)")

        with StopRequest(on_first_signal=announce_stop) as stop:
            while position.epoch < session.recipe.epochs:
                epoch_started = time.perf_counter()
                self.clock.start_epoch(session.totals.seen)
                try:
                    completed = trainer.train_epoch(
                        session.train_data,
                        position,
                        session.totals,
                        self.reporter,
                        on_step=on_step,
                        stop_requested=lambda: stop.requested,
                    )
                except NonFiniteLossError as error:
                    curves.draw(session.metrics)
                    raise _failure(run_dir, session.position.epoch, error) from None
                if not completed:
                    session.clock_s = self.clock.elapsed()
                    session.speeds = self.clock.speeds(session.totals.seen)
                    self._save_checkpoint(run_dir, self.wall_time())
                    curves.draw(session.metrics)
                    raise TrainingInterrupted(run_dir, position.global_step)
                self._finish_epoch(run_dir, environment, epoch_started)
                last = position.epoch >= session.recipe.epochs
                if any_rank(stop.requested, session.distributed, trainer.device) and not last:
                    curves.draw(session.metrics)
                    raise TrainingInterrupted(run_dir, position.global_step)
                curves.draw(session.metrics, force=last)

    def _finish_epoch(self, run_dir: Path, environment: dict[str, Any], epoch_started: float) -> None:
        session = self.session
        trainer, totals, position, recipe = session.trainer, session.totals, session.position, session.recipe
        # Every eval_every epochs the bare network is scored (one pass; mid-run in the training precision, a
        # monitor); the last epoch scores in float32, bare and with every TTA view, so the run says what each export
        # choice buys. TTA costs 2-6 passes: too dear for every epoch of a 10-minute budget.
        final = position.epoch + 1 >= recipe.epochs
        val_loss, val_accuracy = None, None
        if final or (position.epoch + 1) % recipe.eval_every == 0:  # the recipe's monitor interval (eval_every)
            val_loss, val_accuracy = trainer.evaluate(session.val_data, in_training_precision=not final)
        by_tta = {mode: trainer.evaluate(session.val_data, mode)[1] for mode in (VIEWS if final else ())}
        seconds, wall_time_s = time.perf_counter() - epoch_started, self.wall_time()  # training + evaluation
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
        # The clock; a planned run whose forecast left its budget (the machine slowed or sped up) re-plans here.
        replanned = self.clock.end_epoch(
            trainer=trainer,
            plan=session.plan,
            position=position,
            seen=totals.seen,
            train_images=len(session.train_data),
            monitored=val_accuracy is not None and not final,
        )
        session.clock_s = self.clock.recorded_s
        session.speeds = self.clock.speeds()
        self._record_replan(replanned)
        session.totals = EpochTotals()
        self._save_checkpoint(run_dir, wall_time_s)
        if session.distributed.is_main:
            save_model_files(run_dir, trainer.model, session.run_record(environment, wall_time_s))
            write_metrics_csv(run_dir / METRICS_CSV, session.metrics)
        self.reporter.epoch_summary(row, session.recipe.epochs)

    def _save_checkpoint(self, run_dir: Path, wall_time_s: float) -> None:
        if self.session.distributed.is_main:  # under torchrun only rank 0 touches the run folder
            write_checkpoint(run_dir / CHECKPOINT_FILE, self.session.checkpoint_payload(wall_time_s))


def _open_run_dir(session: Session) -> Path:
    """Pick (rank 0, for a fresh run) and create the run folder; every rank learns it and records it."""
    config = session.config

    def choose() -> str:
        if session.run_dir is None:
            session.run_dir = new_run_dir(config.runs_root)
            point_latest(config.runs_root, session.run_dir)
        return str(session.run_dir)

    run_dir = session.run_dir = Path(main_decides(session.distributed, choose))  # rank 0's choice, on every rank
    if session.distributed.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    session.config = replace(config, run_dir=str(run_dir))
    return run_dir


def _failure(run_dir: Path, epochs_done: int, error: NonFiniteLossError) -> TrainingFailed:
    checkpoint = run_dir / CHECKPOINT_FILE
    if checkpoint.exists():
        kept = f"the last good checkpoint ({checkpoint}, after epoch {epochs_done}) is unchanged"
    else:
        kept = "no checkpoint had been saved yet"
    message = f"training diverged: {error}; {kept}. Try a lower --lr"
    return TrainingFailed(message, run_dir, error.global_step)


def _result(session: Session, run_dir: Path, wall_time_s: float) -> FitResult:
    summary = session.val_summary()
    return FitResult(
        run_dir=run_dir,
        checkpoint=run_dir / CHECKPOINT_FILE,
        weights=run_dir / WEIGHTS_FILE,
        run_json=run_dir / RUN_JSON,
        metrics_csv=run_dir / METRICS_CSV,
        curves_png=run_dir / CURVES_PNG,
        metrics=list(session.metrics),
        best_val_accuracy=summary.best_accuracy,
        best_epoch=summary.best_epoch,
        final_val_accuracy=summary.final_accuracy,
        epochs=session.position.epoch,
        wall_time_s=wall_time_s,
        device=str(session.trainer.device),
        rank=session.distributed.rank,
    )
