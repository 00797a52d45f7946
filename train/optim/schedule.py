"""The learning-rate schedule: a factor of the peak rate for every optimizer step."""

from __future__ import annotations

from cifar_edge.train.recipes import Recipe


class LrSchedule:
    """Learning-rate factor per optimizer step (plain attributes only, so LambdaLR can checkpoint it).

    The triangle's default shape is the Recipe's (``lr_start_factor``, ``lr_peak_fraction``, ``lr_end_factor``).
    """

    def __init__(
        self,
        kind: str,
        total_steps: int,
        warmup_steps: int = 0,
        start_factor: float = Recipe.lr_start_factor,
        peak_fraction: float = Recipe.lr_peak_fraction,
        end_factor: float = Recipe.lr_end_factor,
    ) -> None:
        self.kind, self.total_steps, self.warmup_steps = kind, total_steps, warmup_steps
        self.start_factor, self.peak_fraction, self.end_factor = start_factor, peak_fraction, end_factor
        # A mid-run re-plan (budget/clock.py): the step it happened after and the total it replaced; -1 = none.
        self.replanned_at, self.planned_total = -1, total_steps

    def replan(self, step: int, total_steps: int) -> None:
        """Compress the rest of the schedule after ``step`` into a run of ``total_steps``: the factor at ``step``
        stays (no jump), and what was left of the warm-up and decay follows at the new pace to the same end."""
        self.replanned_at, self.planned_total, self.total_steps = step, self.total_steps, total_steps

    def __call__(self, step: int) -> float:
        if self.replanned_at < 0:
            return self._factor(step, self.total_steps)
        if step <= self.replanned_at:
            return self._factor(step, self.planned_total)
        stretch = (self.planned_total - 1 - self.replanned_at) / max(1, self.total_steps - 1 - self.replanned_at)
        return self._factor(self.replanned_at + (step - self.replanned_at) * stretch, self.planned_total)

    def _factor(self, step: float, total_steps: int) -> float:
        if self.kind == "constant":
            return 1.0
        if self.kind == "triangle":
            last = total_steps - 1  # the factor at the last optimizer step is end_factor exactly
            if last <= 0:
                return 1.0
            peak = min(self.peak_fraction * total_steps, last / 2)
            if peak > 0 and step <= peak:  # peak_fraction 0: a pure linear decay from 1.0 at step 0
                return self.start_factor + (1.0 - self.start_factor) * step / peak
            return 1.0 + (self.end_factor - 1.0) * min(1.0, (step - peak) / (last - peak))
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - self.warmup_steps))
