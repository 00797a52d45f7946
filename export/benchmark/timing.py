"""Interleaved timing: the helper that ``cifar-bench`` and the ``bench/`` scripts share, and cifar-bench's three
measurements (latency at batch 1, throughput at a large batch, process cold start).

- Whatever is compared is timed in interleaved rounds (A, B, C, A, B, C, ...), not one after the other: on a shared
  or throttled machine a slow spell then hits every contender alike instead of one, which keeps the ratios honest.
  Medians over the rounds absorb the remaining noise (``interleaved_rounds``, ``medians``). This module imports no
  torch, so scripts that time onnxruntime alone can use it.
- Latency and throughput are model-only: the inputs are already preprocessed float32 arrays in memory, so the
  numbers compare the engines, not the image decoder. Each engine gets warm-up calls that are not counted.
- Latency: single-image calls, ``latency_block`` per engine per round; p50 and p95 of all of them.
- Throughput: one call on the same batch per engine per round; images / median call time.
- Cold start: wall time of a fresh Python process that loads the artifact and classifies one image file, end to end
  (interpreter start, imports, model load, decode, inference); the median of ``cold_starts`` processes. A format the
  torch-free runtime runs (ONNX) goes through the runtime only (the process reports whether torch got imported); a
  run folder and the torch formats load with torch through cifar-eval's opener, the way a PyTorch user would.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from cifar_edge.runtime.common.command import first_line

Forward = Callable[[np.ndarray], Any]
K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass
class Rounds(Generic[K, T]):
    """What ``interleaved_rounds`` measured: each job's result per round, in round order."""

    results: dict[K, list[T]]
    failed: dict[K, str] = field(default_factory=dict)  # with catch=True: jobs dropped, and the first line why


def interleaved_rounds(
    jobs: Mapping[K, Callable[[], T]], rounds: int, *, warmup: int = 0, catch: bool = False
) -> Rounds[K, T]:
    """Call every job once per round, in turn, after ``warmup`` uncounted calls of each (job by job).

    ``catch``: a job that raises is dropped from the later rounds with its error (the others go on); otherwise the
    error propagates.
    """
    measured: Rounds[K, T] = Rounds({key: [] for key in jobs})
    for key, job in jobs.items():
        _call(measured, key, lambda job=job: [job() for _ in range(warmup)], catch)
    for _ in range(rounds):
        for key, job in jobs.items():
            if key not in measured.failed:
                _call(measured, key, lambda key=key, job=job: measured.results[key].append(job()), catch)
    return measured


def _call(measured: Rounds[Any, Any], key: Any, work: Callable[[], object], catch: bool) -> None:
    try:
        work()
    except Exception as error:
        if not catch:
            raise
        measured.failed[key] = first_line(error)


def medians(results: Mapping[K, Sequence[float]]) -> dict[K, float]:
    return {key: statistics.median(values) for key, values in results.items()}


def save_record(path: Path | None, record: dict[str, Any]) -> None:
    """A bench script's ``--out``: its record as indented JSON at ``path`` (folders made); nothing when None."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")


def seconds(work: Callable[[], object]) -> float:
    """Wall time of one call of ``work``."""
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def per_second(work: Callable[[], int]) -> float:
    """Items per second of one call of ``work``, which returns how many items it processed."""
    started = time.perf_counter()
    count = work()
    return count / (time.perf_counter() - started)


@dataclass(frozen=True)
class Repeats:
    """How much timing to do; ``cifar-bench --quick`` uses QUICK."""

    latency_warmup: int = 10
    latency_calls: int = 100  # per engine; the p95 of 100 samples is stable enough to compare rows
    latency_block: int = 10  # single-image calls per engine per round
    throughput_warmup: int = 2
    throughput_calls: int = 10
    cold_starts: int = 3  # each is a whole process (seconds for torch): a median of 3 absorbs one outlier


FULL = Repeats()
QUICK = Repeats(
    latency_warmup=2, latency_calls=5, latency_block=5, throughput_warmup=1, throughput_calls=2, cold_starts=1
)


def _interleave(
    forwards: dict[Hashable, Forward], batches: Callable[[int], np.ndarray], warmup: int, rounds: int, block: int
) -> Rounds[Hashable, list[float]]:
    """Per-engine call times over interleaved rounds (``block`` calls each); engines that raise are dropped."""
    warmed: Rounds[Hashable, list[float]] = Rounds({})
    for key, forward in forwards.items():  # warm-up calls cycle through the batches like the timed ones
        _call(warmed, key, lambda forward=forward: [forward(batches(call)) for call in range(warmup)], catch=True)

    def block_of(forward: Forward) -> Callable[[], list[float]]:
        calls = iter(range(rounds * block))
        return lambda: [seconds(lambda: forward(batches(next(calls)))) for _ in range(block)]

    jobs = {key: block_of(forward) for key, forward in forwards.items() if key not in warmed.failed}
    measured = interleaved_rounds(jobs, rounds, catch=True)
    measured.failed = {**warmed.failed, **measured.failed}
    return measured


def _samples(measured: Rounds[Hashable, list[float]]) -> dict[Hashable, list[float]]:
    """Every call time of each engine that did not fail, rounds flattened."""
    return {
        key: [time for block in blocks for time in block]
        for key, blocks in measured.results.items()
        if key not in measured.failed
    }


def measure_latency(
    forwards: dict[Hashable, Forward], inputs: np.ndarray, repeats: Repeats
) -> tuple[dict[Hashable, tuple[float, float]], dict[Hashable, str]]:
    """(p50, p95) milliseconds of single-image calls per engine, cycling through the first images."""
    singles = [inputs[index : index + 1] for index in range(min(len(inputs), 16))]
    block = max(1, min(repeats.latency_block, repeats.latency_calls))
    rounds = max(1, -(-repeats.latency_calls // block))
    measured = _interleave(forwards, lambda call: singles[call % len(singles)], repeats.latency_warmup, rounds, block)
    results = {
        key: (float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 95) * 1e3))
        for key, times in _samples(measured).items()
        if times
    }
    return results, measured.failed


def measure_throughput(
    forwards: dict[Hashable, Forward], inputs: np.ndarray, batch_size: int, repeats: Repeats
) -> tuple[dict[Hashable, float], dict[Hashable, str]]:
    """Images per second at ``batch_size`` per engine (inputs are tiled when there are fewer images than that)."""
    batch = tile_to(inputs, batch_size)
    rounds = max(1, repeats.throughput_calls)
    measured = _interleave(forwards, lambda _call: batch, repeats.throughput_warmup, rounds, 1)
    results = {key: batch_size / float(np.median(times)) for key, times in _samples(measured).items()}
    return results, measured.failed


def tile_to(inputs: np.ndarray, count: int) -> np.ndarray:
    if len(inputs) >= count:
        return np.ascontiguousarray(inputs[:count])
    repeats = -(-count // len(inputs))
    return np.ascontiguousarray(np.concatenate([inputs] * repeats)[:count])


# Each script prints one JSON line: the label it predicted and whether torch was imported.
_RUNTIME_SCRIPT = """
import json, sys
from cifar_edge.runtime import Classifier
model, image, provider, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with Classifier(model, provider=provider, intra_op_threads=threads) as classifier:
    label = classifier.predict(image).label
print(json.dumps({"label": label, "torch_loaded": "torch" in sys.modules}))
"""

_TORCH_SCRIPT = """
import json, sys
from cifar_edge.export.models import open_model
from cifar_edge.runtime.images import open_image_rgb
from cifar_edge.runtime.preprocess import normalize_batch, resize_to_contract
model, image, provider, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
opened = open_model(model, provider, threads=threads)
contract = opened.contract
pixels = resize_to_contract(open_image_rgb(image, contract.alpha_background), contract)
index = int(opened.engine.forward(normalize_batch(pixels[None], contract)).argmax(1)[0])
print(json.dumps({"label": contract.class_names[index], "torch_loaded": "torch" in sys.modules}))
"""


@dataclass(frozen=True)
class ColdStart:
    seconds: float  # median wall time of the processes
    label: str  # what the fresh process predicted for the image
    torch_loaded: bool

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 4), "label": self.label, "torch_loaded": self.torch_loaded}


class ColdStartError(RuntimeError):
    """The fresh process failed; ``str()`` is one line with its last error line."""


@dataclass(frozen=True)
class ColdStartJob:
    needs_torch: bool  # a run folder or a torch format (else the torch-free runtime runs it)
    model: Path  # the artifact, or the run folder
    image: Path
    provider: str
    threads: int


def _run_process(job: ColdStartJob, timeout_s: float) -> tuple[float, dict[str, Any]]:
    script = _TORCH_SCRIPT if job.needs_torch else _RUNTIME_SCRIPT
    command = [sys.executable, "-c", script, str(job.model), str(job.image), job.provider, str(job.threads)]
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=environment)
    except subprocess.TimeoutExpired:
        raise ColdStartError(f"the cold-start process ran over {timeout_s:.0f} s") from None
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise ColdStartError(f"the cold-start process failed: {lines[-1] if lines else done.returncode}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def measure_cold_starts(
    jobs: dict[Hashable, ColdStartJob], repeats: Repeats, timeout_s: float = 300.0
) -> tuple[dict[Hashable, ColdStart], dict[Hashable, str]]:
    """Median wall time of ``repeats.cold_starts`` fresh processes per job, run in interleaved rounds."""
    processes = {key: (lambda job=job: _run_process(job, timeout_s)) for key, job in jobs.items()}
    measured = interleaved_rounds(processes, max(1, repeats.cold_starts), catch=True)
    results = {}
    for key, runs in measured.results.items():
        if key in measured.failed or not runs:
            continue
        last = runs[-1][1]  # what the last process predicted
        wall = float(np.median([time for time, _ in runs]))
        results[key] = ColdStart(wall, str(last["label"]), bool(last["torch_loaded"]))
    return results, measured.failed
