"""The training clock: what a budget measures, the --stop-after deadline, and a budgeted run's one re-plan.

The clock runs from the first epoch's start to the end of the last epoch's evaluation, over all sessions of a run
(setup, data loading and the budget's warm-up measurement are outside it). Every read goes through one injected
clock (``time.perf_counter`` unless a test passes a fake one), read once per optimizer step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cifar_edge.train.budget.plan import replan_steps
from cifar_edge.train.distributed import broadcast_object
from cifar_edge.train.reporting import Reporter
from cifar_edge.train.state import StepEvent

if TYPE_CHECKING:
    from cifar_edge.train.session import Session

# A planned run that trains this much slower than the measured plan (img/s) re-plans its rest, once: past this the
# run would overrun its budget by more than the +-10% it promises.
REPLAN_SLOWDOWN = 0.2
# ... and one that trains this much faster lengthens its rest (the same once): the warm-up measurement can read a
# machine slower than it then runs, and a run that ends early misses the promise as surely as a late one.
REPLAN_SPEEDUP = 0.1
# The speed is judged over whole epochs covering at least this share of the budget, so that a short epoch's noise
# (tiny data, a one-step epoch) does not count as a slowdown; a session's first epoch is left out: it pays one-time
# costs (allocations, kernel choices for each batch shape) that the plan's warmed-up measurement does not.
REPLAN_WINDOW = 0.1


class RunClock:
    def __init__(self, session: Session, clock: Callable[[], float], reporter: Reporter) -> None:
        self.session, self.clock, self.reporter = session, clock, reporter
        self.started = self.epoch_started = self.last_step = 0.0
        self.epoch_seen = 0  # images the epoch had trained when it (re)started
        self.window = [0.0, 0]  # steps' seconds and images since the speed was last judged
        self.epochs = 0  # epochs ended in this session

    def start(self) -> None:
        self.started = self.clock()

    def elapsed(self, now: float | None = None) -> float:
        """Seconds on the training clock, earlier sessions of the run included."""
        return self.session.previous_clock_s + (self.clock() if now is None else now) - self.started

    def start_epoch(self) -> None:
        self.epoch_started = self.last_step = self.clock()
        self.epoch_seen = self.session.totals.seen

    def step_hook(self, on_step: Callable[[StepEvent], None] | None) -> Callable[[StepEvent], None]:
        """The loop's on_step: read the clock, stop at the deadline, then call the caller's ``on_step``."""

        def after_step(event: StepEvent) -> None:
            self.last_step = self.clock()
            limit = self.session.config.stop_after_s
            if limit is not None and self.session.stopped is None and self.elapsed(self.last_step) >= limit:
                self.session.trainer.end_epoch_now()
                self.session.stopped = {
                    "stop_after_s": limit,
                    "epoch": event.epoch,
                    "global_step": event.global_step,
                    "clock_s": round(self.elapsed(self.last_step), 3),
                }
            if on_step is not None:
                on_step(event)

        return after_step

    def finish_if_stopped(self) -> None:
        """After an epoch the deadline cut short: make it the run's last (scored as the final epoch)."""
        session = self.session
        if session.stopped is not None and session.recipe.epochs > session.position.epoch + 1:
            session.recipe = replace(session.recipe, epochs=session.position.epoch + 1)
            session.trainer.recipe = session.recipe

    def end_epoch(self) -> None:
        """At an epoch's end, before its checkpoint: advance the recorded clock; re-plan a slowed planned run."""
        session = self.session
        session.clock_s = self.elapsed()
        plan = session.plan
        settled = plan is None or plan.get("replanned") or plan.get("extended")  # once only; --epochs ends the plan
        if settled or session.position.epoch >= session.recipe.epochs:
            return
        decision = self._judge() if session.distributed.is_main else None  # rank 0's clock decides for all
        decision = broadcast_object(decision, session.distributed)
        if decision is not None:
            self._apply(decision)

    def _judge(self) -> dict[str, Any] | None:
        """Add the epoch to the speed window; once the window is long enough, the re-plan it calls for, if any."""
        session = self.session
        self.epochs += 1
        if self.epochs == 1:
            return None
        seconds = self.window[0] + self.last_step - self.epoch_started
        images = self.window[1] + session.totals.seen - self.epoch_seen
        self.window = [seconds, images]
        if seconds < REPLAN_WINDOW * session.plan["budget_s"] or images <= 0:
            return None
        self.window = [0.0, 0]
        return self._replan(images / seconds)

    def _replan(self, images_per_s: float) -> dict[str, Any] | None:
        session, plan = self.session, self.session.plan
        slower = images_per_s < (1 - REPLAN_SLOWDOWN) * plan["images_per_s"]
        faster = images_per_s > (1 + REPLAN_SPEEDUP) * plan["images_per_s"]
        if not (slower or faster):
            return None
        total = replan_steps(plan, session.position.epoch, session.clock_s, images_per_s, longer=faster)
        current = session.trainer.run_steps(len(session.train_data))
        if (slower and total >= current) or (faster and total <= current):
            return None  # time to spare from faster epochs before, or no whole step to add: nothing to change
        return {
            "after_epoch": session.position.epoch,
            "global_step": session.position.global_step,
            "clock_s": round(session.clock_s, 3),
            "measured_images_per_s": round(images_per_s, 3),
            "planned_images_per_s": plan["images_per_s"],
            "total_steps": total,
            "epochs": -(-total // plan["steps_per_epoch"]),
            "direction": "longer" if faster else "shorter",
        }

    def _apply(self, decision: dict[str, Any]) -> None:
        session = self.session
        trainer = session.trainer
        trainer.scheduler.lr_lambdas[0].replan(decision["global_step"], decision["total_steps"])
        trainer.total_steps = decision["total_steps"]
        session.recipe = trainer.recipe = replace(session.recipe, epochs=decision["epochs"])
        session.plan["replanned"] = decision
        self.reporter.line(
            f"re-planned after epoch {decision['after_epoch']}: {decision['measured_images_per_s']:.0f} img/s "
            f"against the planned {decision['planned_images_per_s']:.0f}, so {decision['total_steps']} steps in all "
            f"({decision['epochs']} epochs, {decision['direction']}) to end within the budget"
        )
