"""Budget-aware against cut-off: validation accuracy per wall-clock budget, on this machine, in one run.

At each budget the default recipe trains twice, one right after the other on the same data:

- ``budgeted``: ``cifar-train --budget B``: a few timed steps before the clock, then the steps that fit, the
  triangle schedule and the epoch-counted knobs stretched to them (budget-aware linear decay: Li, Yumer and Ramanan,
  "Budgeted Training", ICLR 2020);
- ``fixed_stopped``: today's fixed schedule (the recipe's 18 epochs) cut off by this script when the training clock
  reaches B: its weights at that step, scored like a last epoch (that final evaluation runs after the deadline,
  uncounted; the budgeted run pays for its own inside B, so the comparison leans towards the cut-off schedule).

Each run's result is its last epoch's float32 scoring of the validation set: one pass (``val_accuracy``, bare) and
with flip + shift TTA, 6 passes (``val_flip_shift_accuracy``). Writes ``budget_curve.json`` (after every run) and
``budget_curve.png`` (accuracy against budget) to ``--out``.

    python bench/budget_curve.py [--data DIR] [--limit-per-class N] [--budgets 2m,5m,10m,20m] [--out DIR]

Smoke test in seconds: ``--limit-per-class 50 --budgets 20s,40s``. Measured curves belong in docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifar_edge.runtime.common.atomic_io import atomic_write_text
from cifar_edge.runtime.contract import Contract
from cifar_edge.train import TrainConfig, fit
from cifar_edge.train.augment import normalize
from cifar_edge.train.config import PRECISIONS, parse_duration
from cifar_edge.train.data.load import Splits, load_splits
from cifar_edge.train.environment import describe_environment, resolve_device
from cifar_edge.train.recipes import DEFAULT
from cifar_edge.train.state import StepEvent
from cifar_edge.train.tta import with_tta

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"
METHODS = ("budgeted", "fixed_stopped")


def run_config(method: str, budget_s: float, args: argparse.Namespace, run_dir: Path) -> TrainConfig:
    """The default recipe planned to ``budget_s``, or its fixed epochs (cut off by :class:`CutOff`)."""
    length: dict[str, Any] = {"budget_s": budget_s} if method == "budgeted" else {"epochs": DEFAULT.epochs}
    return TrainConfig(
        **length,
        run_dir=str(run_dir),
        device=args.device,
        threads=args.threads,
        precision=args.precision,
        seed=args.seed,
        quiet=True,
    )


class Deadline(Exception):
    """Raised from the step hook at the cut-off, carrying the step that reached it."""

    def __init__(self, event: StepEvent, clock_s: float) -> None:
        super().__init__(f"cut off after step {event.global_step}")
        self.event, self.clock_s = event, clock_s


class CutOff:
    """The fixed schedule's cut-off: ``fit``'s training clock (its first reading starts the epochs' clock, every
    step reads it once) and a step hook that stops the run once it passes ``budget_s``."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s, self.started = budget_s, None

    def clock(self) -> float:
        now = time.perf_counter()
        self.started = now if self.started is None else self.started
        return now

    def on_step(self, event: StepEvent) -> None:
        clock_s = time.perf_counter() - (self.started or 0.0)
        if clock_s >= self.budget_s:
            raise Deadline(event, clock_s)


@torch.no_grad()
def accuracy(model: nn.Module, splits: Splits, tta: str) -> float:
    """Top-1 of ``model`` (float32, eval mode) on the validation split, with test-time augmentation ``tta``."""
    device = next(model.parameters()).device
    contract = Contract()  # the default recipe's normalisation
    mean = torch.tensor(contract.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(contract.std, device=device).view(1, 3, 1, 1)
    scored, correct = with_tta(model.eval(), tta), 0
    for start in range(0, len(splits.val_labels), 1024):
        images = torch.from_numpy(splits.val_images[start : start + 1024]).to(device).permute(0, 3, 1, 2)
        predicted = scored(normalize(images, mean, std)).argmax(dim=1).cpu().numpy()
        correct += int((predicted == splits.val_labels[start : start + 1024]).sum())
    return correct / len(splits.val_labels)


def train_one(method: str, budget_s: float, splits: Splits, args: argparse.Namespace) -> dict[str, Any]:
    run_dir = args.out / "runs" / f"{method}-{budget_s:g}s"
    started = time.perf_counter()
    cut_off = CutOff(budget_s)
    hooks: dict[str, Any] = {} if method == "budgeted" else {"clock": cut_off.clock, "on_step": cut_off.on_step}
    try:
        result = fit(run_config(method, budget_s, args, run_dir), splits, **hooks)
    except Deadline as deadline:
        event = deadline.event
        return {
            "budget_s": budget_s,
            "method": method,
            "val_accuracy": accuracy(event.model, splits, "none"),  # one float32 pass over the validation set
            "val_flip_shift_accuracy": accuracy(event.model, splits, "flip_shift"),  # flip + shift TTA: 6 passes
            "train_clock_s": round(deadline.clock_s, 3),
            "wall_time_s": round(time.perf_counter() - started, 3),
            "warm_up_s": None,
            "steps": event.global_step,
            "epochs": event.epoch,
            "plan": None,
            "replans": [],
            "stopped": {"cut_off_s": budget_s, "epoch": event.epoch, "global_step": event.global_step},
            "run_dir": str(run_dir),
        }
    record = json.loads(result.run_json.read_text())
    last, plan = result.metrics[-1], record.get("plan")
    return {
        "budget_s": budget_s,
        "method": method,
        "val_accuracy": last["val_accuracy"],  # one float32 pass over the validation set
        "val_flip_shift_accuracy": last.get("val_flip_shift_accuracy"),  # flip + shift TTA: 6 passes
        "train_clock_s": round(result.train_clock_s, 3),  # what the budget counts
        "wall_time_s": round(time.perf_counter() - started, 3),  # the whole fit() call, warm-up and setup included
        "warm_up_s": None if plan is None else plan["warm_up_s"],
        "steps": int(torch.load(result.checkpoint, weights_only=True)["position"]["global_step"]),
        "epochs": len(result.metrics),
        "plan": None if plan is None else {key: plan[key] for key in ("batch_size", "total_steps", "reason")},
        "replans": [] if plan is None else plan["replans"],
        "stopped": None,
        "run_dir": str(run_dir),
    }


def plot(path: Path, runs: list[dict[str, Any]], title: str) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=120)
    axes = figure.subplots()
    for method, colour in zip(METHODS, ("tab:blue", "tab:orange"), strict=True):
        points = sorted((run["budget_s"] / 60, run) for run in runs if run["method"] == method)
        if not points:
            continue
        minutes = [minute for minute, _ in points]
        if all(run["val_flip_shift_accuracy"] is not None for _, run in points):
            tta = [100 * run["val_flip_shift_accuracy"] for _, run in points]
            axes.plot(minutes, tta, marker="o", color=colour, label=f"{method} (TTA)")
        bare = [100 * run["val_accuracy"] for _, run in points]
        axes.plot(minutes, bare, marker="o", linestyle="--", color=colour, label=f"{method} (1 pass)")
    axes.set_xlabel("wall-clock budget (minutes of training clock)")
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(path, format="png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="'cifar10' or an ImageFolder root (DIR/train/)")
    parser.add_argument("--limit-per-class", type=int, default=None, help="first N images per class (quick runs)")
    parser.add_argument("--budgets", default="2m,5m,10m,20m", help="comma-separated durations (90s, 10m, 1h30m)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", choices=PRECISIONS, default=TrainConfig.precision, help="training arithmetic")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/out/budget_curve"), help="folder for the results")
    args = parser.parse_args(argv)
    try:
        budgets = [parse_duration(text, "--budgets") for text in args.budgets.split(",")]
    except ValueError as error:
        parser.error(str(error))
    splits = load_splits(
        args.data, seed=args.seed, cache_dir=args.cache_dir, limit_per_class=args.limit_per_class, show_progress=False
    )
    if len(splits.val_labels) == 0:
        parser.error(f"{args.data}: no validation images to score (give more images per class)")
    args.out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    record: dict[str, Any] = {
        "data": {"source": args.data, "train": len(splits.train_labels), "val": len(splits.val_labels)},
        "environment": describe_environment(device),
        "budgets_s": budgets,
        "runs": [],
    }
    for budget_s in budgets:
        for method in METHODS:  # side by side, so both see the machine in the same state
            run = train_one(method, budget_s, splits, args)
            record["runs"].append(run)
            atomic_write_text(args.out / "budget_curve.json", json.dumps(record, indent=2) + "\n")
            six = run["val_flip_shift_accuracy"]
            tta = "" if six is None else f", flip + shift TTA {100 * six:.2f}%"
            print(
                f"{budget_s:>7g}s {method:>13}: {100 * run['val_accuracy']:.2f}% (1 pass){tta}; "
                f"{run['steps']} steps, {run['epochs']} epochs, clock {run['train_clock_s']:.1f}s, "
                f"wall {run['wall_time_s']:.1f}s",
                flush=True,
            )
    title = f"default recipe, {record['data']['train']} training images, {record['environment']['device_name']}"
    plot(args.out / "budget_curve.png", record["runs"], title)
    print(f"wrote {args.out / 'budget_curve.json'} and {args.out / 'budget_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
