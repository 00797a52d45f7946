"""Accuracy against training time: the default recipe against the tutorial's (seed) recipe, same data, same run.

Both recipes train with ``fit()`` on the same decoded images (a seeded, stratified validation split of the training
folder), one full run after the other: run it on a quiet machine, the timings assume nothing else competes for the
cores. Prints, per epoch, the validation accuracy against the cumulative training
seconds of each recipe (cumulative epoch seconds, i.e. with evaluation, in brackets), the time the default recipe
needed to pass the seed recipe's final accuracy and the ratio against the seed recipe's total time, and writes a
plot (``recipe.png``) and the points (``recipe.json``).

    python bench/recipe.py [--data DIR] [--limit-per-class N] [--epochs N] [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from cifar_edge.runtime.common.atomic_io import atomic_path, atomic_write_text
from cifar_edge.train import TrainConfig, fit
from cifar_edge.train.data.load import Splits, load_splits
from cifar_edge.train.environment import configure_threads, device_name, resolve_device
from cifar_edge.train.recipes import get_recipe

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"
RECIPES = ("default", "seed")


def _points(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per epoch: accuracy, cumulative training seconds (the optimizer steps) and epoch seconds."""
    points, train_total, epoch_total = [], 0.0, 0.0
    for row in metrics:
        train_total += row["train_seconds"]
        epoch_total += row["seconds"]
        points.append(
            {
                "epoch": row["epoch"],
                "val_accuracy": row["val_accuracy"],
                "val_tta_accuracy": row.get("val_tta_accuracy"),  # the last epoch's, where the recipe has TTA
                "train_seconds": round(train_total, 2),
                "epoch_seconds": round(epoch_total, 2),
                "wall_seconds": row["elapsed_seconds"],  # since the run started: data, setup and saving included
            }
        )
    return points


def _time_to_reach(points: list[dict[str, Any]], accuracy: float) -> float | None:
    for point in points:
        if point["val_accuracy"] is not None and point["val_accuracy"] >= accuracy:
            return point["train_seconds"]
    return None


def train_both(
    splits: Splits, epochs: dict[str, int], device: str, threads: int | None, runs: Path, verbose: bool
) -> dict[str, list[dict[str, Any]]]:
    """Train each recipe for its full epoch count, one after the other; the per-epoch metrics of each.

    Each run is uninterrupted: the recipes' schedules depend on the epoch count (the default's triangle spans the
    whole run), so stopping early or extending a run epoch by epoch would measure a different recipe.
    """
    results: dict[str, list[dict[str, Any]]] = {}
    for name in RECIPES:
        config = TrainConfig(
            recipe=name,
            epochs=epochs[name],
            run_dir=str(runs / name),
            device=device,
            threads=threads,
            quiet=True,
            recipe_overrides={"eval_every": 1},  # a point per epoch for the curve (the default monitors every 3rd)
        )
        results[name] = fit(config, splits).metrics
        if verbose:
            for row in results[name]:
                print(
                    f"{name:>8} epoch {row['epoch']}/{epochs[name]}: val acc {100 * row['val_accuracy']:.2f}%, "
                    f"{row['train_images_per_second']:.0f} img/s, {row['seconds']:.1f} s",
                    flush=True,
                )
    return results


def plot(path: Path, series: dict[str, list[dict[str, Any]]], title: str) -> None:
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, points in series.items():
        seconds = [point["train_seconds"] for point in points]
        accuracy = [100 * point["val_accuracy"] for point in points]
        line = axes.plot(seconds, accuracy, marker="o", label=f"{name} recipe")[0]
        axes.annotate(f"{accuracy[-1]:.1f}%", (seconds[-1], accuracy[-1]), textcoords="offset points", xytext=(4, -12))
        final_tta = points[-1].get("val_tta_accuracy")
        if final_tta is not None:  # what the export computes: the final weights with the recipe's TTA
            axes.plot(seconds[-1], 100 * final_tta, marker="*", markersize=12, color=line.get_color(), linestyle="")
            label = f"{100 * final_tta:.1f}% with TTA"
            axes.annotate(label, (seconds[-1], 100 * final_tta), textcoords="offset points", xytext=(-70, 6))
    axes.set_xlim(left=0)
    axes.margins(y=0.1)  # room for the labels above the last points
    axes.set_xlabel("cumulative training seconds")
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    with atomic_path(path) as temp_path:
        figure.savefig(temp_path, format="png")
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ImageFolder root (DIR/train/<class>/*)")
    parser.add_argument("--limit-per-class", type=int, default=None, help="first N images per class (quick runs)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs for both recipes (default: each recipe's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/out"), help="folder for recipe.png and recipe.json")
    parser.add_argument("--json", action="store_true", help="print the JSON record instead of the table")
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        print(f"bench/recipe.py: error: {args.data}/train not found (pass --data DIR)", file=sys.stderr)
        return 2

    device = resolve_device(args.device)
    configure_threads(device, args.threads)
    splits = load_splits(
        data=str(args.data),
        val_fraction=0.1,
        seed=0,
        limit_per_class=args.limit_per_class,
        show_progress=not args.json,
    )
    epochs = {name: args.epochs or get_recipe(name).epochs for name in RECIPES}
    with tempfile.TemporaryDirectory(prefix="cifar-bench-recipe-") as runs:
        metrics = train_both(splits, epochs, args.device, args.threads, Path(runs), verbose=not args.json)
    series = {name: _points(metrics[name]) for name in RECIPES}

    seed_final = series["seed"][-1]["val_accuracy"]
    seed_seconds = series["seed"][-1]["train_seconds"]
    default_at_seed = _time_to_reach(series["default"], seed_final)
    record = {
        "device": str(device),
        "device_name": device_name(device),
        "threads": configure_threads(device, args.threads),
        "data": str(args.data),
        "train_images": len(splits.train_labels),
        "val_images": len(splits.val_labels),
        "epochs": epochs,
        "recipes": series,
        "seed_final_val_accuracy": seed_final,
        "default_seconds_to_seed_final_accuracy": default_at_seed,
        "speedup_to_seed_final_accuracy": None if not default_at_seed else round(seed_seconds / default_at_seed, 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "recipe.json", json.dumps(record, indent=2) + "\n")
    title = (
        f"{record['device_name']} ({record['threads']} threads): {record['train_images']} train / "
        f"{record['val_images']} val images"
    )
    plot(args.out / "recipe.png", series, title)

    if args.json:
        print(json.dumps(record))
        return 0
    print(f"\n{title}")
    print(f"{'epoch':>5}  " + "  ".join(f"{name + ' acc':>12} {'train s (epoch s)':>20}" for name in RECIPES))
    for epoch in range(max(epochs.values())):
        cells = []
        for name in RECIPES:
            points = series[name]
            if epoch < len(points):
                point = points[epoch]
                accuracy = f"{100 * point['val_accuracy']:.2f}%"
                cells.append(f"{accuracy:>12} {point['train_seconds']:>9.1f} ({point['epoch_seconds']:>8.1f})")
            else:
                cells.append(f"{'':>12} {'':>20}")
        print(f"{epoch + 1:>5}  " + "  ".join(cells))
    for name in RECIPES:
        final = series[name][-1]
        tta = "" if final["val_tta_accuracy"] is None else f", {100 * final['val_tta_accuracy']:.2f}% with TTA"
        print(
            f"{name} final: {100 * final['val_accuracy']:.2f}% without TTA{tta}, "
            f"{final['wall_seconds']:.1f} s of cifar-train wall time"
        )
    if default_at_seed:
        print(
            f"default reaches the seed recipe's final {100 * seed_final:.2f}% after {default_at_seed:.1f} s of "
            f"training vs {seed_seconds:.1f} s for seed: {record['speedup_to_seed_final_accuracy']:.2f}x"
        )
    else:
        print(f"default did not reach the seed recipe's final {100 * seed_final:.2f}% in these epochs")
    print(f"wrote {args.out / 'recipe.png'} and {args.out / 'recipe.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
