"""The training clock: what a budget measures, and a budgeted run's one re-plan when its speed leaves the plan's.

The clock runs from the first epoch's start to the end of the last epoch's evaluation, over all sessions of a run
(setup, data loading and the budget's warm-up measurement are outside it). Every read goes through one injected
clock (``time.perf_counter`` unless a test passes a fake one), read once per optimizer step.
"""

from __future__ import annotations

from collections.abc import Callable

from cifar_edge.train.budget.plan import Plan, Replan, replan_steps
from cifar_edge.train.distributed import DistributedContext, main_decides
from cifar_edge.train.loop import Trainer
from cifar_edge.train.reporting import Reporter
from cifar_edge.train.state import Position, StepEvent

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
    def __init__(
        self, clock: Callable[[], float], previous_s: float, distributed: DistributedContext, reporter: Reporter
    ) -> None:
        self.clock, self.previous_s, self.distributed, self.reporter = clock, previous_s, distributed, reporter
        self.started = self.epoch_started = self.last_step = 0.0
        self.recorded_s = previous_s  # the clock at the last epoch's end, earlier sessions included
        self.epoch_seen = 0  # images the epoch had trained when it (re)started
        self.window = (0.0, 0)  # steps' seconds and images since the speed was last judged
        self.epochs = 0  # epochs ended in this session

    def start(self) -> None:
        self.started = self.clock()

    def elapsed(self) -> float:
        """Seconds on the training clock, earlier sessions of the run included."""
        return self.previous_s + self.clock() - self.started

    def start_epoch(self, seen: int) -> None:
        """An epoch (re)starts with ``seen`` of its images trained."""
        self.epoch_started = self.last_step = self.clock()
        self.epoch_seen = seen

    def step_hook(self, on_step: Callable[[StepEvent], None] | None) -> Callable[[StepEvent], None]:
        """The loop's on_step: read the clock, then call the caller's ``on_step``."""

        def after_step(event: StepEvent) -> None:
            self.last_step = self.clock()
            if on_step is not None:
                on_step(event)

        return after_step

    def end_epoch(
        self, *, trainer: Trainer, plan: Plan | None, position: Position, seen: int, train_images: int
    ) -> Replan | None:
        """At an epoch's end, before its checkpoint: record the clock; when a planned run's speed left the plan's,
        re-plan its rest (once; rank 0's clock decides for all) through ``trainer.replan`` and return the re-plan
        for the plan's record. ``seen``: the epoch's trained images."""
        self.recorded_s = self.elapsed()
        if plan is None or plan.replanned is not None or plan.extended is not None:  # once; --epochs ends the plan
            return None
        if position.epoch >= trainer.recipe.epochs:
            return None
        current = trainer.run_steps(train_images)
        decision = main_decides(self.distributed, lambda: self._judge(plan, position, seen, current))
        if decision is None:
            return None
        trainer.replan(at_step=decision.global_step, total_steps=decision.total_steps, epochs=decision.epochs)
        self.reporter.line(
            f"re-planned after epoch {decision.after_epoch}: {decision.measured_images_per_s:.0f} img/s "
            f"against the planned {decision.planned_images_per_s:.0f}, so {decision.total_steps} steps in all "
            f"({decision.epochs} epochs, {decision.direction}) to end within the budget"
        )
        return decision

    def _judge(self, plan: Plan, position: Position, seen: int, current_steps: int) -> Replan | None:
        """Add the epoch to the speed window; once the window is long enough, the re-plan it calls for, if any."""
        self.epochs += 1
        if self.epochs == 1:
            return None
        seconds = self.window[0] + self.last_step - self.epoch_started
        images = self.window[1] + seen - self.epoch_seen
        self.window = (seconds, images)
        if seconds < REPLAN_WINDOW * plan.budget_s or images <= 0:
            return None
        self.window = (0.0, 0)
        images_per_s, planned = images / seconds, plan.candidate.images_per_s
        slower, faster = images_per_s < (1 - REPLAN_SLOWDOWN) * planned, images_per_s > (1 + REPLAN_SPEEDUP) * planned
        if not (slower or faster):
            return None
        total = replan_steps(plan, position.epoch, self.recorded_s, images_per_s, longer=faster)
        if (slower and total >= current_steps) or (faster and total <= current_steps):
            return None  # time to spare from faster epochs before, or no whole step to add: nothing to change
        return Replan(
            after_epoch=position.epoch,
            global_step=position.global_step,
            clock_s=round(self.recorded_s, 3),
            measured_images_per_s=round(images_per_s, 3),
            planned_images_per_s=planned,
            total_steps=total,
            epochs=-(-total // plan.steps_per_epoch),
            direction="longer" if faster else "shorter",
        )
