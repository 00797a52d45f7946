"""Train a plan of recipe variants over several seeds and compare them: accuracy, training seconds, paired differences.

A plan is a JSON file::

    {"base": {...TrainConfig fields...}, "seeds": [0, 1, 2, 3],
     "variants": [{"label": "default"}, {"label": "ls0.3", "config": {"recipe_overrides": {"label_smoothing": 0.3}}}]}

A variant may carry its own ``"seeds"`` list (e.g. one eager run beside several compiled ones), and a
``"train_fraction"`` in (0, 1]: it then trains on that seeded, stratified share of the training split, scored on the
same validation images (what more data is worth: ``bench/plans/cpu_data_scaling.json``).
Every (seed, variant) pair is one ``fit()`` run of ``base`` updated by the variant's ``config`` (``recipe_overrides``
merge). Runs go seed by seed, so a deadline leaves complete, paired seeds. With ``--workers N`` the runs go to N
worker processes at once: on a GPU, where one small-network run leaves the device mostly idle between kernel launches,
that multiplies throughput (the per-run seconds are then not timings: time with one worker). The first variant is
the baseline: each other variant's accuracy is compared with it seed by seed (mean difference and its standard
error), which removes the seed's share of the noise (the validation split and initialisation).

    python bench/sweep.py PLAN.json [--data DIR] [--workers N] [--deadline-s S] [--out DIR] [--runs DIR]

Writes ``sweep.json`` (every run, then the summary) after each run, and prints a table at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from cifar_edge.runtime.common.atomic_io import atomic_write_text

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"


def run_config(base: dict[str, Any], variant: dict[str, Any], seed: int, data: str, runs: Path) -> dict[str, Any]:
    """One run's configuration: base, then the variant's fields (recipe_overrides merged), then seed and folders."""
    config = {**base, **{key: value for key, value in variant.get("config", {}).items() if key != "recipe_overrides"}}
    overrides = {**base.get("recipe_overrides", {}), **variant.get("config", {}).get("recipe_overrides", {})}
    config.update(recipe_overrides=overrides, seed=seed, data=data, quiet=True)
    config["run_dir"] = str(runs / f"{variant['label']}-seed{seed}")
    return config


def train_fraction(variant: dict[str, Any]) -> float:
    """The variant's share of the training split (1.0 = all of it); ValueError outside (0, 1]."""
    fraction = variant.get("train_fraction", 1.0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"variant {variant.get('label')!r}: train_fraction must be in (0, 1], got {fraction!r}")
    return float(fraction)


def training_share(config: dict[str, Any], fraction: float) -> Any:
    """The run's splits with only ``fraction`` of each class's training images (seeded by the run's seed), the
    validation images unchanged. fit() is handed the arrays, so run.json records no reloadable data spec."""
    from cifar_edge.train.config import TrainConfig
    from cifar_edge.train.data.load import load_splits

    options = TrainConfig(**config)
    splits = load_splits(
        options.data,
        options.data_root,
        options.val_fraction,
        options.seed,
        cache_dir=options.cache_dir,
        limit_per_class=options.limit_per_class,
        show_progress=False,
    )
    # The first floor(fraction x count) of each class in a permutation drawn from seed 1000 + the run's seed: the
    # subsets behind docs/training.md's data-size tables, so this plan reproduces them.
    generator = np.random.default_rng(1000 + options.seed)
    chosen = []
    for label in range(len(splits.class_names)):
        members = np.flatnonzero(splits.train_labels == label)
        chosen.append(generator.permutation(members)[: int(fraction * len(members))])
    keep = np.sort(np.concatenate(chosen))
    labels = splits.train_labels[keep]
    description = {
        **splits.description,
        "spec": None,
        "train_fraction": fraction,
        "counts": {**splits.description.get("counts", {}), "train": len(keep)},
        "class_counts": {
            **splits.description.get("class_counts", {}),
            "train": {name: int(np.sum(labels == label)) for label, name in enumerate(splits.class_names)},
        },
    }
    return replace(splits, train_images=splits.train_images[keep], train_labels=labels, description=description)


def train_one(label: str, seed: int, config: dict[str, Any], fraction: float = 1.0) -> dict[str, Any]:
    """fit() one configuration, on ``fraction`` of the training images; the numbers the comparison needs (or the
    error, in one line)."""
    from cifar_edge.train import TrainConfig, fit  # in the worker: torch is imported per process

    started = time.perf_counter()
    record: dict[str, Any] = {"label": label, "seed": seed}
    if config.get("compile"):
        import torch

        # Every run builds a new model: forget the last run's compiled code (torch's on-disk caches keep the
        # recompilation short) so that a long sweep never hits dynamo's recompile limit and falls back to eager.
        torch._dynamo.reset()
    try:
        result = fit(TrainConfig(**config), training_share(config, fraction) if fraction < 1 else None)
    except Exception as error:  # one failed run must not end the sweep
        return record | {"error": f"{type(error).__name__}: {error}".splitlines()[0]}
    saved = json.loads(result.run_json.read_text())
    environment = saved["environment"]
    last = result.metrics[-1]
    return record | {
        "final_accuracy": result.final_val_accuracy,  # with the recipe's TTA: what the export computes
        "bare_accuracy": last["val_accuracy"],
        "flip_accuracy": last.get("val_flip_accuracy"),  # 2 passes
        "flip_shift_accuracy": last.get("val_flip_shift_accuracy"),  # 6 passes
        "train_seconds": round(sum(row["train_seconds"] for row in result.metrics), 3),
        "fit_seconds": round(result.wall_time_s, 3),
        "process_seconds": round(time.perf_counter() - started, 3),  # with data loading and set-up
        "warm_up_seconds": environment.get("warm_up_seconds"),  # compilation, cuDNN autotuning (not in training)
        "epoch_train_seconds": [row["train_seconds"] for row in result.metrics],
        "device_name": environment.get("device_name"),
        "epochs": result.epochs,
        "train_images": saved["metrics"]["train_images"],
    }


def prepare_cache(config: dict[str, Any]) -> None:
    """Decode the image folder into the cache once, here, before the runs read it (workers would race to)."""
    from cifar_edge.train.data.load import load_splits

    started = time.perf_counter()
    splits = load_splits(
        config["data"],
        cache_dir=config.get("cache_dir"),
        limit_per_class=config.get("limit_per_class"),
        show_progress=False,
    )
    print(
        f"data: {len(splits.train_images)} training images ready in {time.perf_counter() - started:.1f} s", flush=True
    )


def summarize(runs: list[dict[str, Any]], labels: list[str]) -> list[dict[str, Any]]:
    """Per variant: runs, mean/sd accuracy, mean training seconds, and the paired difference against labels[0]; also
    the mean flip + shift (6-pass) accuracy and each variant's accuracy against labels[0]'s 6-pass one (what a
    one-pass model must reach to replace test-time augmentation)."""
    by_label = {
        label: {run["seed"]: run for run in runs if run["label"] == label and "error" not in run} for label in labels
    }
    baseline = by_label[labels[0]]
    summary = []
    for label in labels:
        done = by_label[label]
        accuracies = [run["final_accuracy"] for run in done.values() if run["final_accuracy"] is not None]
        six = [run.get("flip_shift_accuracy") for run in done.values() if run.get("flip_shift_accuracy") is not None]
        row: dict[str, Any] = {
            "label": label,
            "runs": len(done),
            "failed": sum(1 for run in runs if run["label"] == label and "error" in run),
            "mean_accuracy": statistics.fmean(accuracies) if accuracies else None,
            "sd_accuracy": statistics.stdev(accuracies) if len(accuracies) > 1 else None,
            "mean_flip_shift_accuracy": statistics.fmean(six) if six else None,
            "mean_train_seconds": statistics.fmean(run["train_seconds"] for run in done.values()) if done else None,
        }
        if label != labels[0]:
            row.update(_paired(done, baseline, "final_accuracy", "mean_difference", "difference_se"))
        row.update(_paired(done, baseline, "flip_shift_accuracy", "vs_first_6pass", "vs_first_6pass_se"))
        summary.append(row)
    return summary


def _paired(
    done: dict[int, dict[str, Any]], baseline: dict[int, dict[str, Any]], first_key: str, name: str, se_name: str
) -> dict[str, Any]:
    """Mean over shared seeds of this variant's final accuracy minus the baseline's ``first_key``, and its standard
    error; empty when no seed pairs up."""
    pairs = [(done[seed]["final_accuracy"], baseline[seed].get(first_key)) for seed in done if seed in baseline]
    paired = [mine - first for mine, first in pairs if mine is not None and first is not None]
    if not paired:
        return {}
    se = statistics.stdev(paired) / math.sqrt(len(paired)) if len(paired) > 1 else None
    return {"paired_seeds": len(paired), name: statistics.fmean(paired), se_name: se}


def format_table(summary: list[dict[str, Any]]) -> str:
    def percent(value: float | None, sign: str = "") -> str:
        return "-" if value is None else f"{100 * value:{sign}.2f}"

    def difference(row: dict[str, Any], name: str, se_name: str) -> str:
        if name not in row:
            return ""
        shown = percent(row[name], "+")
        return shown + (f" ({percent(row[se_name])})" if row.get(se_name) is not None else "")

    lines = [
        f"{'variant':<28} {'runs':>4} {'mean acc %':>10} {'sd':>5} {'vs first (se)':>15} {'6-pass %':>8} "
        f"{'vs first 6-pass (se)':>21} {'train s':>8}"
    ]
    for row in summary:
        seconds = "-" if row["mean_train_seconds"] is None else f"{row['mean_train_seconds']:.2f}"
        lines.append(
            f"{row['label']:<28} {row['runs']:>4} {percent(row['mean_accuracy']):>10} {percent(row['sd_accuracy']):>5} "
            f"{difference(row, 'mean_difference', 'difference_se'):>15} "
            f"{percent(row.get('mean_flip_shift_accuracy')):>8} "
            f"{difference(row, 'vs_first_6pass', 'vs_first_6pass_se'):>21} {seconds:>8}"
            + (f"  ({row['failed']} failed)" if row["failed"] else "")
        )
    return "\n".join(lines)


def sweep(
    plan: dict[str, Any], data: str, out: Path, runs_dir: Path, workers: int, deadline_s: float | None
) -> dict[str, Any]:
    labels = [variant["label"] for variant in plan["variants"]]
    if len(set(labels)) != len(labels):
        raise ValueError("variant labels must be unique")
    seeds = sorted({seed for variant in plan["variants"] for seed in variant.get("seeds", plan["seeds"])})
    jobs = [
        (
            variant["label"],
            seed,
            run_config(plan.get("base", {}), variant, seed, data, runs_dir),
            train_fraction(variant),
        )
        for seed in seeds
        for variant in plan["variants"]
        if seed in variant.get("seeds", plan["seeds"])
    ]
    if not jobs:
        raise ValueError("the plan has no runs (no variants, or no seeds)")
    started, runs = time.perf_counter(), []
    prepare_cache(jobs[0][2])

    def write() -> None:
        result = {"plan": plan, "data": data, "workers": workers, "runs": runs, "summary": summarize(runs, labels)}
        atomic_write_text(out / "sweep.json", json.dumps(result, indent=2) + "\n")

    def record(run: dict[str, Any]) -> None:
        runs.append(run)
        if "error" in run:
            shown = run["error"]
        else:
            accuracy = "no validation images"
            if run["final_accuracy"] is not None:
                accuracy = f"{100 * run['final_accuracy']:.2f}% (bare {100 * run['bare_accuracy']:.2f}%"
                if run["flip_shift_accuracy"] is not None:
                    accuracy += f", flip + shift {100 * run['flip_shift_accuracy']:.2f}%"
                accuracy += ")"
            shown = f"{accuracy}, {run['train_seconds']:.2f} s training, {run['process_seconds']:.1f} s in all"
        print(f"[{time.perf_counter() - started:6.0f} s] {run['label']} seed {run['seed']}: {shown}", flush=True)
        write()

    def in_time() -> bool:
        return deadline_s is None or time.perf_counter() - started < deadline_s

    if workers <= 1:
        for job in jobs:
            if not in_time():
                break
            record(train_one(*job))
    else:
        # spawn: CUDA cannot be used in a forked child of a process that touched it
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending: set[Future[dict[str, Any]]] = set()
            queue = iter(jobs)
            while True:
                while len(pending) < workers and in_time() and (job := next(queue, None)) is not None:
                    pending.add(pool.submit(train_one, *job))
                if not pending:
                    break
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    record(future.result())
    write()
    skipped = len(jobs) - len(runs)
    if skipped:
        print(f"deadline reached: {skipped} of {len(jobs)} runs not started", flush=True)
    return {"runs": runs, "summary": summarize(runs, labels)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", type=Path, help="the plan (JSON: base, seeds, variants)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="ImageFolder root (DIR/train/<class>/*)")
    parser.add_argument(
        "--workers", type=int, default=1, help="runs at once, each in its own process (1 = in this one)"
    )
    parser.add_argument("--deadline-s", type=float, default=None, help="start no run after this many seconds")
    parser.add_argument("--out", type=Path, default=Path("sweep-out"), help="folder for sweep.json")
    parser.add_argument("--runs", type=Path, default=None, help="folder for the run folders (default OUT/runs)")
    args = parser.parse_args()
    try:
        plan = json.loads(args.plan.read_text())
        result = sweep(plan, args.data, args.out, args.runs or args.out / "runs", args.workers, args.deadline_s)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {args.plan}: {error}", file=sys.stderr)
        return 2
    print(format_table(result["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
