"""Does a second core help? One model file, the runtime's thread settings side by side, in one run.

Model only (``Classifier.logits`` on decoded images) and end to end (``Classifier.predict_iter`` decoding JPEG
files), at batch 64 and 256, for: the defaults (on the CPU one single-thread session run per core, each pool
thread decoding its share of a batch and running the model on it), one run with every core as intra-op threads
(spin-waiting on and off), one run with one thread, and the baseline: the same defaults in a process pinned to one
core (what ``taskset -c 0 cifar-infer`` gets; its defaults then use one thread and one decoder). Each figure is the
median of interleaved rounds, so machine load hits every setting alike; ratios are against the pinned process.

    .venv/bin/python bench/threads.py MODEL.onnx [--images 2000] [--rounds 5] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cifar_edge.export.benchmark.timing import interleaved_rounds, medians, per_second, save_record
from cifar_edge.runtime.classifier import Classifier
from cifar_edge.runtime.hardware import cpu_features
from cifar_edge.runtime.session import usable_cpu_count

REPO_ROOT = Path(__file__).resolve().parents[1]
CIFAR_TRAIN = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg" / "train"
ONE_CORE = "defaults, pinned to 1 core"
BATCHES = (64, 256)
KINDS = ("model only", "end to end")


def settings(cores: int) -> dict[str, dict[str, Any]]:
    """Name -> Classifier keyword arguments."""
    return {
        f"defaults ({cores} streams x 1 thread)": {},
        f"1 stream x {cores} threads": {"intra_op_threads": cores},
        f"1 stream x {cores} threads, no spinning": {"intra_op_threads": cores, "spin": False},
        "1 stream x 1 thread": {"intra_op_threads": 1},
    }


def measure(classifier: Classifier, kind: str, batch: int, files: list[Path], decoded: np.ndarray) -> float:
    """img/s of one pass: model only (4 runs on decoded images) or end to end over ``files``."""

    def one_pass() -> int:
        if kind == "model only":
            for _ in range(4):
                classifier.logits(decoded[:batch])
            return 4 * batch
        return sum(1 for _ in classifier.predict_iter(files, batch_size=batch))

    return per_second(one_pass)


def sample_files(images: int) -> list[Path]:
    return sorted(CIFAR_TRAIN.rglob("*.jpg"))[:: max(1, 50_000 // images)][:images]


def worker(model: Path, images: int) -> int:
    """The pinned side: reads "KIND|BATCH" lines, answers each with the img/s of one pass."""
    files = sample_files(images)
    with Classifier(model, "cpu") as classifier:
        decoded = np.stack([classifier.prepare(path) for path in files])
        print(json.dumps({"streams": classifier.streams, "threads": classifier.intra_op_threads}), flush=True)
        for line in sys.stdin:
            kind, batch = line.strip().split("|")
            print(measure(classifier, kind, int(batch), files, decoded), flush=True)
    return 0


def start_pinned(model: Path, images: int) -> tuple[subprocess.Popen[str], dict[str, int]]:
    core = min(os.sched_getaffinity(0))
    command = [sys.executable, __file__, str(model), "--images", str(images), "--worker"]
    # Pinned before Python starts, as taskset does: the runtime's defaults then see one usable core.
    process = subprocess.Popen(
        ["taskset", "-c", str(core), *command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.model, args.images)
    files = sample_files(args.images)
    classifiers = {name: Classifier(args.model, "cpu", **kw) for name, kw in settings(usable_cpu_count()).items()}
    decoded = np.stack([next(iter(classifiers.values())).prepare(path) for path in files])
    pinned, pinned_plan = start_pinned(args.model, args.images)

    def ask_pinned(kind: str, batch: int) -> float:
        assert pinned.stdin is not None and pinned.stdout is not None
        pinned.stdin.write(f"{kind}|{batch}\n")
        pinned.stdin.flush()
        return float(pinned.stdout.readline())

    record: dict[str, Any] = {"cpu": cpu_features(), "model": str(args.model), "images": len(files)}
    record.update(pinned_plan={ONE_CORE: pinned_plan}, rows=[])
    for batch in BATCHES:
        for kind in KINDS:
            jobs: dict[str, Callable[[], float]] = {ONE_CORE: lambda k=kind, b=batch: ask_pinned(k, b)}
            for name, classifier in classifiers.items():
                jobs[name] = lambda c=classifier, k=kind, b=batch: measure(c, k, b, files, decoded)
            rates = medians(interleaved_rounds(jobs, args.rounds, warmup=1).results)  # one warm-up pass each
            for name, rate in rates.items():
                ratio = rate / rates[ONE_CORE]
                record["rows"].append(
                    {"batch": batch, "kind": kind, "setting": name, "img_per_s": round(rate, 1), "vs_1_core": ratio}
                )
                print(f"batch {batch:3} {kind:10} {name:36} {rate:8.1f} img/s = {ratio:.2f}x one core")
    assert pinned.stdin is not None
    pinned.stdin.close()
    pinned.wait()
    for classifier in classifiers.values():
        classifier.close()
    save_record(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
