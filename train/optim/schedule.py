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

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return 1.0
        if self.kind == "triangle":
            last = self.total_steps - 1  # the factor at the last optimizer step is end_factor exactly
            if last <= 0:
                return 1.0
            peak = min(self.peak_fraction * self.total_steps, last / 2)
            if peak > 0 and step <= peak:  # peak_fraction 0: a pure linear decay from 1.0 at step 0
                return self.start_factor + (1.0 - self.start_factor) * step / peak
            return 1.0 + (self.end_factor - 1.0) * min(1.0, (step - peak) / (last - peak))
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps))
