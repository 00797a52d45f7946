"""Does a second core help? One model file, onnxruntime thread settings side by side, in one run.

Model only (preprocessed batches in memory) and end to end (the runtime's ``Classifier`` decoding JPEG files while
the session runs), at batch 64 and 256, for: 1 intra-op thread, N threads with onnxruntime's spin-waiting on (its
default) and off. Each figure is the median of interleaved rounds, so machine load hits every setting alike; the
ratio is against 1 thread in the same run. What ``default_intra_op_threads`` and the spinning rule pick comes from
these figures (docs/runtime.md, "Threads").

    .venv/bin/python bench/threads.py MODEL.onnx [--images 2000] [--rounds 5] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cifar_edge.runtime.classifier import Classifier
from cifar_edge.runtime.cpu import cpu_features
from cifar_edge.runtime.providers.strict import usable_cpu_count

REPO_ROOT = Path(__file__).resolve().parents[1]
CIFAR_TRAIN = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg" / "train"


def settings(cores: int) -> dict[str, tuple[int, bool]]:
    """Name -> (intra-op threads, spin-waiting)."""
    return {
        "1 thread": (1, True),
        f"{cores} threads, spinning": (cores, True),
        f"{cores} threads, no spinning": (cores, False),
    }


def interleaved(jobs: dict[str, Callable[[], int]], rounds: int) -> dict[str, float]:
    """Median items/s of each job over ``rounds`` rounds that run every job in turn."""
    for job in jobs.values():
        job()
    rates: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(rounds):
        for name, job in jobs.items():
            started = time.perf_counter()
            count = job()
            rates[name].append(count / (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    files = sorted(CIFAR_TRAIN.rglob("*.jpg"))[:: max(1, 50_000 // args.images)][: args.images]
    cores = usable_cpu_count()
    classifiers = {
        name: Classifier(args.model, "cpu", intra_op_threads=threads, spin=spin)
        for name, (threads, spin) in settings(cores).items()
    }
    first = next(iter(classifiers.values()))
    decoded = np.stack([first.prepare(path) for path in files])
    record: dict[str, object] = {"cpu": cpu_features(), "model": str(args.model), "images": len(files), "rows": []}
    for batch in (64, 256):
        model_only = {
            name: (lambda c=classifier, b=batch: _model_only(c, decoded[:b]))
            for name, classifier in classifiers.items()
        }
        end_to_end = {
            name: (lambda c=classifier, b=batch: sum(1 for _ in c.predict_iter(files, batch_size=b)))
            for name, classifier in classifiers.items()
        }
        for kind, jobs in (("model only", model_only), ("end to end", end_to_end)):
            rates = interleaved(jobs, args.rounds)
            base = rates["1 thread"]
            for name, rate in rates.items():
                row = {"batch": batch, "kind": kind, "setting": name, "img_per_s": round(rate, 1)}
                row["vs_1_thread"] = round(rate / base, 3)
                record["rows"].append(row)
                print(f"batch {batch:3} {kind:10} {name:26} {rate:8.1f} img/s = {rate / base:.2f}x 1 thread")
    for classifier in classifiers.values():
        classifier.close()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


def _model_only(classifier: Classifier, images: np.ndarray, calls: int = 4) -> int:
    """Images classified by ``calls`` session runs on already decoded images."""
    for _ in range(calls):
        classifier.logits(images)
    return calls * len(images)


if __name__ == "__main__":
    sys.exit(main())
