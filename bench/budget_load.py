"""A training budget under load: the default recipe's clock and accuracy with a CPU hog placed in its budget.

Each run is a fresh process training the default recipe to a budget (``fit``, as ``cifar-train --budget`` does) while
a hog -- separate processes busy-looping, one per core unless ``--hog-processes`` says otherwise -- runs for part of
the training clock:

- ``none``: a quiet machine (the reference);
- ``first``: the first quarter of the budget; ``middle``: from 37.5% to 62.5%;
- ``whole``: from the first step to the end (the warm-up measurement before the clock stays quiet, so the plan
  starts too long and the controller has to shorten it).

The hog starts at the first optimizer step's end and is placed on the training clock (the budget's own clock). Each
run reports its training clock against its budget, its epochs, its re-plans and its one-pass validation accuracy (the
last epoch's float32 score of the held-out split, no TTA); the table ends with each loaded run's accuracy against the
quiet run of the same budget and seed, measured in the same invocation. Writes ``budget_load.json`` after every run.

    python bench/budget_load.py [--budgets 10m] [--placements none,first,middle,whole] [--seeds 0,1] [--out DIR]

Smoke test in a minute: ``--limit-per-class 100 --budgets 40s --placements none,middle --seeds 0``. Run it alone on
the machine: anything else running is an unplaced hog. Figures belong in docs/training.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"
# Where each placement's hog runs, as fractions of the budget on the training clock (None: to the end of training).
PLACEMENTS: dict[str, tuple[float, float | None] | None] = {
    "none": None,
    "first": (0.0, 0.25),
    "middle": (0.375, 0.625),
    "whole": (0.0, None),
}
CLOCK_TOLERANCE = 0.05  # the target: every training clock within +-5% of its budget
ACCURACY_TOLERANCE = 0.003  # ... and, with the hog in one quarter, accuracy within 0.3 point of the quiet run


def _spin() -> None:
    while True:
        pass


@dataclass
class Hog:
    """Busy-looping processes switched on and off by the training clock (``on_step`` is fit's step hook)."""

    budget_s: float
    window: tuple[float, float | None] | None
    processes: int
    started_at: float | None = None  # the first step's end: the hog's zero
    workers: list[multiprocessing.process.BaseProcess] = field(default_factory=list)
    seconds: float = 0.0  # how long the hog ran
    since: float = 0.0

    def on_step(self, _event: object) -> None:
        now = time.perf_counter()
        self.started_at = now if self.started_at is None else self.started_at
        if self.window is None:
            return
        clock = now - self.started_at
        start, stop = self.window
        inside = start * self.budget_s <= clock and (stop is None or clock < stop * self.budget_s)
        if inside and not self.workers:
            context = multiprocessing.get_context("spawn")
            self.workers = [context.Process(target=_spin, daemon=True) for _ in range(self.processes)]
            for worker in self.workers:
                worker.start()
            self.since = now
        elif not inside and self.workers:
            self.stop()

    def stop(self) -> None:
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            worker.join()
        if self.workers:
            self.seconds += time.perf_counter() - self.since
        self.workers = []


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """One training run with its hog (in this process: the child of :func:`main`)."""
    from cifar_edge.train import TrainConfig, fit

    budget_s, placement, seed = args.one_budget, args.one_placement, args.one_seed
    hog = Hog(budget_s, PLACEMENTS[placement], args.hog_processes)
    run_dir = args.out / "runs" / f"{budget_s:g}s-{placement}-seed{seed}"
    config = TrainConfig(
        data=args.data,
        limit_per_class=args.limit_per_class,
        budget_s=budget_s,
        seed=seed,
        run_dir=str(run_dir),
        quiet=True,
    )
    started = time.perf_counter()
    try:
        result = fit(config, on_step=hog.on_step)
    finally:
        hog.stop()
    record = json.loads(result.run_json.read_text())
    plan = record["plan"]
    return {
        "budget_s": budget_s,
        "placement": placement,
        "seed": seed,
        "train_clock_s": round(result.train_clock_s, 3),
        "clock_ratio": round(result.train_clock_s / budget_s, 4),
        "hog_s": round(hog.seconds, 1),
        "hog_processes": args.hog_processes if PLACEMENTS[placement] else 0,
        "val_accuracy": result.metrics[-1]["val_accuracy"],  # one float32 pass, no TTA
        "epochs": len(result.metrics),
        "planned_epochs": plan["epochs"],
        "model": record["architecture"]["name"],
        "size_choice": plan.get("size"),
        "planned_images_per_s": plan["images_per_s"],
        "replans": plan["replans"],
        "wall_time_s": round(time.perf_counter() - started, 1),
        "run_dir": str(run_dir),
    }


def _summary(run: dict[str, Any], quiet: dict[str, Any] | None) -> str:
    # Run-length coded, e.g. "-4+6": four shorter re-plans, then six longer.
    signs = ["+" if replan["direction"] == "longer" else "-" for replan in run["replans"]]
    directions = "".join(f"{sign}{len(list(group))}" for sign, group in itertools.groupby(signs)) or "none"
    delta = "" if quiet is None else f" ({100 * (run['val_accuracy'] - quiet['val_accuracy']):+.2f} vs quiet)"
    return (
        f"{run['budget_s']:>6g}s {run['placement']:>6} seed {run['seed']}: clock {run['train_clock_s']:.1f}s "
        f"= {run['clock_ratio']:.3f} x budget, {run['epochs']} epochs (planned {run['planned_epochs']}), re-plans "
        f"{directions}, hog {run['hog_s']:.0f}s, {run['model']}, val {100 * run['val_accuracy']:.2f}%{delta}"
    )


def verdicts(runs: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, each judged on the runs made."""
    lines = []
    clocks = [abs(run["clock_ratio"] - 1) <= CLOCK_TOLERANCE for run in runs]
    lines.append(f"clock within +-{CLOCK_TOLERANCE:.0%} of the budget: {sum(clocks)}/{len(runs)} runs")
    quiet = {(run["budget_s"], run["seed"]): run for run in runs if run["placement"] == "none"}
    for run in runs:
        reference = quiet.get((run["budget_s"], run["seed"]))
        if run["placement"] in ("first", "middle") and reference is not None:
            delta = run["val_accuracy"] - reference["val_accuracy"]
            verdict = "ok" if delta >= -ACCURACY_TOLERANCE else "MISSED"
            lines.append(
                f"{run['budget_s']:g}s {run['placement']} seed {run['seed']}: accuracy {100 * delta:+.2f} point vs "
                f"quiet (target >= -{100 * ACCURACY_TOLERANCE:.1f}): {verdict}"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    from cifar_edge.runtime.common.atomic_io import atomic_write_text
    from cifar_edge.train.config import parse_duration

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="'cifar10' or an ImageFolder root (DIR/train/)")
    parser.add_argument("--limit-per-class", type=int, default=None, help="first N images per class (quick runs)")
    parser.add_argument("--budgets", default="10m", help="comma-separated durations (2m, 10m, 20m)")
    parser.add_argument("--placements", default="none,first,middle,whole", help=f"of {', '.join(PLACEMENTS)}")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--hog-processes", type=int, default=os.cpu_count() or 1, help="busy loops (default: cores)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/budget_load"), help="folder for the results")
    parser.add_argument("--one-budget", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--one-placement", help=argparse.SUPPRESS)
    parser.add_argument("--one-seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_placement is not None:  # the child: one run, its record as the last line of stdout
        print(json.dumps(run_one(args)), flush=True)
        return 0
    placements = args.placements.split(",")
    unknown = [name for name in placements if name not in PLACEMENTS]
    if unknown:
        parser.error(f"--placements: unknown {', '.join(unknown)} (choose from {', '.join(PLACEMENTS)})")
    try:
        budgets = [parse_duration(text, "--budgets") for text in args.budgets.split(",")]
        seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError as error:
        parser.error(str(error))
    args.out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"cpu": _cpu(), "hog_processes": args.hog_processes, "runs": []}
    quiet: dict[tuple[float, int], dict[str, Any]] = {}
    for seed in seeds:
        for budget_s in budgets:
            for placement in placements:
                command = [sys.executable, __file__, "--data", args.data, "--out", str(args.out)]
                command += ["--hog-processes", str(args.hog_processes)]
                if args.limit_per_class is not None:
                    command += ["--limit-per-class", str(args.limit_per_class)]
                command += ["--one-budget", str(budget_s), "--one-placement", placement, "--one-seed", str(seed)]
                finished = subprocess.run(command, capture_output=True, text=True, check=False)
                if finished.returncode != 0:
                    print(f"{budget_s:g}s {placement} seed {seed}: failed\n{finished.stderr[-2000:]}", flush=True)
                    continue
                run = json.loads(finished.stdout.strip().splitlines()[-1])
                record["runs"].append(run)
                if placement == "none":
                    quiet[(budget_s, seed)] = run
                atomic_write_text(args.out / "budget_load.json", json.dumps(record, indent=2) + "\n")
                print(_summary(run, None if placement == "none" else quiet.get((budget_s, seed))), flush=True)
    record["verdicts"] = verdicts(record["runs"])
    atomic_write_text(args.out / "budget_load.json", json.dumps(record, indent=2) + "\n")
    print("\n".join(record["verdicts"]))
    print(f"wrote {args.out / 'budget_load.json'}")
    return 0


def _cpu() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
    except OSError:
        return "unknown"
    facts = dict(line.split(":", 1) for line in lines if ":" in line)
    flags = facts.get("Flags", "")
    extras = [flag for flag in ("avx512_vnni", "avx512_bf16", "avx2") if flag in flags.split()]
    return f"{facts.get('Model name', '?').strip()}, {os.cpu_count()} cores, {' '.join(extras)}"


if __name__ == "__main__":
    sys.exit(main())
