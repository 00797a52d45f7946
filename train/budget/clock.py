"""The training clock: what a budget measures, and the controller that keeps a budgeted run on it.

The clock runs from the first epoch's start to the end of the last epoch's evaluation, over all sessions of a run
(setup, data loading and the budget's warm-up measurement are outside it). Every read goes through one injected
clock (``time.perf_counter`` unless a test passes a fake one), read once per optimizer step.

The controller: every CHECK_EVERY of the budget's planned steps and at every epoch's end, a planned run forecasts
where its current length ends at its recent speed; when that misses the budget by more than a dead band (wider for
turning back, and in the first epoch), the rest is re-planned towards the most steps that fit at that speed, longer
or shorter, as often as the load changes; an epoch in progress, the last one included, takes its new length. A
shortening goes only part of the way while much of the budget is left (a load that passes costs less compressed
schedule; one that stays is caught up with at the next checks). The learning rate and the averaging follow the
fraction of planned work done (optim.LrSchedule), so a re-plan moves neither; the knobs counted in epochs are
re-scaled by the plan's rule. run.json records every re-plan.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

from cifar_edge.train.budget.plan import Plan, Replan, forecast_s, replan_steps
from cifar_edge.train.distributed import DistributedContext, main_decides
from cifar_edge.train.loop import Trainer
from cifar_edge.train.reporting import Reporter
from cifar_edge.train.state import Position

# A check every this share of the budget's planned steps (at the probe's speed; steps, so that a resumed run checks
# where the uninterrupted one did): under load an epoch lasts several times longer, so checking only at epoch ends
# reacted to a load late.
CHECK_EVERY = 0.01
# The recent speed is measured over the latest stretches between checks covering at least this share of the budget:
# stretches differ by several percent from one another (docs/training.md), a few average that down; a longer window
# would lag a change of load.
SPEED_WINDOW = 0.1
# Damping: a forecast within this share of the seconds left (or MIN_DEAD_BAND of the budget, whichever is larger)
# of the budget changes nothing, so epoch-to-epoch noise does not move the length; near the end the band narrows to
# MIN_DEAD_BAND, which bounds the error the controller leaves.
DEAD_BAND = 0.05
MIN_DEAD_BAND = 0.01
# Hysteresis: turning back (longer after shorter, or the reverse) takes a miss this many bands wide, so noise around
# a change of load does not make the length oscillate.
REVERSAL_BANDS = 2.0
# The run's first epoch pays one-time costs (allocations, first touches) the plan's warmed-up measurement does not:
# it moves the plan only when it misses by this many bands (a load, not a warm-up).
FIRST_EPOCH_BANDS = 3.0
# A shortening removes this share of the steps the recent speed says to remove while more than FULL_CUT_LEFT of the
# budget is left: a load that passes within a few checks then compresses the schedule less (the learning rate decays
# early for the rest of the run otherwise), and one that stays halves the gap at every check. Near the end the whole
# cut, as the time left forces it.
SHORTEN_SHARE = 0.5
FULL_CUT_LEFT = 0.25


class RunClock:
    def __init__(
        self,
        clock: Callable[[], float],
        previous_s: float,
        distributed: DistributedContext,
        reporter: Reporter,
        speeds: dict[str, Any] | None = None,
    ) -> None:
        """``previous_s`` and ``speeds``: the clock and the :meth:`speeds` record of earlier sessions of the run."""
        self.clock, self.previous_s, self.distributed, self.reporter = clock, previous_s, distributed, reporter
        self.started = self.stretch_started = self.last_step = 0.0
        self.recorded_s = previous_s  # the clock at the last epoch's end, earlier sessions included
        self.stretch_seen = 0  # images the epoch had trained when the stretch since the last check started
        # (seconds, images) of the latest stretches between checks, and of the part of the current one an earlier
        # session trained: saved with the checkpoint, so a resumed run judges its speed as the uninterrupted run would.
        speeds = speeds or {}
        self.recent: deque[tuple[float, int]] = deque((s, i) for s, i in speeds.get("recent", []))
        partial = speeds.get("partial", (0.0, 0))
        self.partial = (float(partial[0]), int(partial[1]))
        # The latest monitor pass's seconds over the probe's: evaluation's own slowdown (None: none measured yet).
        self.eval_slowdown: float | None = speeds.get("eval_slowdown")

    def start(self) -> None:
        self.started = self.clock()

    def elapsed(self) -> float:
        """Seconds on the training clock, earlier sessions of the run included."""
        return self.previous_s + self.clock() - self.started

    def _at_last_step(self) -> float:
        """The training clock at the latest step's end."""
        return self.previous_s + self.last_step - self.started

    def start_epoch(self, seen: int) -> None:
        """An epoch (re)starts with ``seen`` of its images trained."""
        self.stretch_started = self.last_step = self.clock()
        self.stretch_seen = seen

    def speeds(self, seen: int | None = None) -> dict[str, Any]:
        """The speed record a checkpoint keeps; ``seen``: the images of an epoch stopped part-way (None: between
        epochs)."""
        part = (0.0, 0) if seen is None else self._stretch_so_far(seen)
        return {
            "recent": [list(stretch) for stretch in self.recent],
            "partial": list(part),
            "eval_slowdown": self.eval_slowdown,
        }

    def _stretch_so_far(self, seen: int) -> tuple[float, int]:
        """(seconds, images) trained since the last check, an earlier session's part included."""
        return self.partial[0] + self.last_step - self.stretch_started, self.partial[1] + seen - self.stretch_seen

    def after_step(
        self, *, trainer: Trainer, plan: Plan | None, position: Position, seen: int, train_images: int
    ) -> Replan | None:
        """After every optimizer step: read the clock; at a check inside an epoch (every CHECK_EVERY of the planned
        steps, the epoch's last step left to :meth:`end_epoch`), re-plan when the forecast leaves the budget."""
        self.last_step = self.clock()
        if plan is None or plan.extended is not None or position.step >= trainer.epoch_steps:
            return None
        every = max(1, round(CHECK_EVERY * plan.budget_s * plan.candidate.images_per_s / plan.candidate.batch_size))
        if position.global_step % every:
            return None
        replan = self._check(
            trainer=trainer,
            plan=plan,
            position=position,
            seen=seen,
            train_images=train_images,
            elapsed=self._at_last_step(),
        )
        self.stretch_started, self.stretch_seen = self.last_step, seen
        return replan

    def end_epoch(
        self, *, trainer: Trainer, plan: Plan | None, position: Position, seen: int, train_images: int, monitored: bool
    ) -> Replan | None:
        """At an epoch's end, after its evaluation and before its checkpoint: record the clock; when a planned run's
        forecast leaves the budget, re-plan its rest. ``seen``: the epoch's trained images; ``monitored``: the epoch
        ended with a monitor pass (timed against the probe's, for the forecast of the evaluations to come)."""
        self.recorded_s = self.elapsed()
        work = None if plan is None else plan.workload
        if work is not None and monitored and work.val_images and work.monitor_images_per_s > 0:
            evaluated_s = self.recorded_s - self._at_last_step()
            self.eval_slowdown = evaluated_s / (work.val_images / work.monitor_images_per_s)
        if plan is None or plan.extended is not None:  # --epochs ends the plan
            return None
        if position.epoch >= trainer.recipe.epochs:
            return None
        return self._check(
            trainer=trainer, plan=plan, position=position, seen=seen, train_images=train_images, elapsed=self.recorded_s
        )

    def _check(
        self, *, trainer: Trainer, plan: Plan, position: Position, seen: int, train_images: int, elapsed: float
    ) -> Replan | None:
        """Close the stretch since the last check; re-plan (rank 0's clock decides for all) through
        ``trainer.replan`` when the forecast at ``elapsed`` calls for it, and return the re-plan for the record."""
        current = trainer.run_steps(train_images)
        decision = main_decides(self.distributed, lambda: self._judge(plan, position, seen, current, elapsed))
        if decision is None:
            return None
        # The epoch in progress has its trainability and averaging set: the knobs move no earlier than its end.
        started = position.epoch + (position.step > 0)
        knobs = plan.rescaled_knobs(decision.epochs, trainer.recipe, started)
        trainer.replan(at_step=decision.global_step, total_steps=decision.total_steps, knobs=knobs)
        where = f"in epoch {position.epoch + 1}" if position.step else f"after epoch {decision.after_epoch}"
        self.reporter.line(
            f"re-planned {where}: at {decision.measured_images_per_s:.0f} img/s the run would end at "
            f"{decision.forecast_s:.0f}s of {plan.budget_s:g}s, so {decision.total_steps} steps in all "
            f"({decision.epochs} epochs, {decision.direction})"
        )
        return decision

    def _judge(self, plan: Plan, position: Position, seen: int, current_steps: int, elapsed: float) -> Replan | None:
        """Add the stretch to the recent ones; the re-plan the recent speed calls for, if any."""
        (seconds, images), self.partial = self._stretch_so_far(seen), (0.0, 0)
        # Rounded to the microsecond: a resumed session's differences of other clock readings then sum alike.
        self.recent.append((round(seconds, 6), images))
        while len(self.recent) > 1 and sum(s for s, _ in list(self.recent)[1:]) >= SPEED_WINDOW * plan.budget_s:
            self.recent.popleft()
        seconds, images = sum(s for s, _ in self.recent), sum(i for _, i in self.recent)
        if seconds <= 0 or images <= 0:
            return None
        speed, done = images / seconds, position.global_step
        forecast = forecast_s(
            plan,
            done_steps=done,
            elapsed_s=elapsed,
            images_per_s=speed,
            total_steps=current_steps,
            eval_slowdown=self.eval_slowdown,
        )
        left = plan.budget_s - elapsed
        band = max(DEAD_BAND * left, MIN_DEAD_BAND * plan.budget_s)
        longer = forecast < plan.budget_s
        if done <= plan.steps_per_epoch:
            band *= FIRST_EPOCH_BANDS
        elif plan.replans and (plan.replans[-1].direction == "longer") != longer:
            band *= REVERSAL_BANDS
        if abs(forecast - plan.budget_s) <= band:
            return None
        total = replan_steps(plan, done, elapsed, speed, self.eval_slowdown)
        if total == current_steps or longer != (total > current_steps):
            return None  # no whole step to add or remove in the direction the forecast asks
        if not longer and left > FULL_CUT_LEFT * plan.budget_s:
            total = current_steps - math.ceil(SHORTEN_SHARE * (current_steps - total))
        return Replan(
            after_epoch=position.epoch,
            global_step=done,
            clock_s=round(elapsed, 3),
            measured_images_per_s=round(speed, 3),
            forecast_s=round(forecast, 3),
            total_steps=total,
            epochs=-(-total // plan.steps_per_epoch),
            direction="longer" if total > current_steps else "shorter",
        )
