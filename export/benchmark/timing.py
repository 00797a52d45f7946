"""Timing for ``cifar-bench``: latency at batch 1, throughput at a large batch, and process cold start.

- Latency and throughput are model-only: the inputs are already preprocessed float32 arrays in memory, so the
  numbers compare the engines, not the image decoder. Each engine gets warm-up calls that are not counted.
- Engines are timed in interleaved rounds (A, B, C, A, B, C, ...), not one after the other: on a shared or
  throttled machine a slow spell then hits every engine alike instead of one, which keeps the ratios between rows
  honest. Medians over the rounds absorb the remaining noise.
- Latency: single-image calls, ``latency_block`` per engine per round; p50 and p95 of all of them.
- Throughput: one call on the same batch per engine per round; images / median call time.
- Cold start: wall time of a fresh Python process that loads the artifact and classifies one image file, end to end
  (interpreter start, imports, model load, decode, inference); the median of ``cold_starts`` processes. ONNX goes
  through the torch-free runtime only (the process reports whether torch got imported); PyTorch and TorchScript
  load with torch, the way a PyTorch user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifar_edge.runtime.common.command import first_line

Forward = Callable[[np.ndarray], Any]


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


def _timed(forward: Forward, batch: np.ndarray) -> float:
    started = time.perf_counter()
    forward(batch)
    return time.perf_counter() - started


def _interleave(
    forwards: dict[Hashable, Forward], batches: Callable[[int], np.ndarray], warmup: int, rounds: int, block: int
) -> tuple[dict[Hashable, list[float]], dict[Hashable, str]]:
    """Per-engine call times over interleaved rounds; engines that raise are dropped with their error."""
    samples: dict[Hashable, list[float]] = {key: [] for key in forwards}
    failed: dict[Hashable, str] = {}
    for key, forward in forwards.items():
        try:
            for call in range(warmup):
                forward(batches(call))
        except Exception as error:
            failed[key] = first_line(error)
    for round_index in range(rounds):
        for key, forward in forwards.items():
            if key in failed:
                continue
            try:
                for call in range(block):
                    samples[key].append(_timed(forward, batches(round_index * block + call)))
            except Exception as error:
                failed[key] = first_line(error)
    return samples, failed


def measure_latency(
    forwards: dict[Hashable, Forward], inputs: np.ndarray, repeats: Repeats
) -> tuple[dict[Hashable, tuple[float, float]], dict[Hashable, str]]:
    """(p50, p95) milliseconds of single-image calls per engine, cycling through the first images."""
    singles = [inputs[index : index + 1] for index in range(min(len(inputs), 16))]
    block = max(1, min(repeats.latency_block, repeats.latency_calls))
    rounds = max(1, -(-repeats.latency_calls // block))
    samples, failed = _interleave(
        forwards, lambda call: singles[call % len(singles)], repeats.latency_warmup, rounds, block
    )
    results = {
        key: (float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 95) * 1e3))
        for key, times in samples.items()
        if key not in failed and times
    }
    return results, failed


def measure_throughput(
    forwards: dict[Hashable, Forward], inputs: np.ndarray, batch_size: int, repeats: Repeats
) -> tuple[dict[Hashable, float], dict[Hashable, str]]:
    """Images per second at ``batch_size`` per engine (inputs are tiled when there are fewer images than that)."""
    batch = tile_to(inputs, batch_size)
    samples, failed = _interleave(
        forwards, lambda _call: batch, repeats.throughput_warmup, max(1, repeats.throughput_calls), 1
    )
    results = {key: batch_size / float(np.median(times)) for key, times in samples.items() if key not in failed}
    return results, failed


def tile_to(inputs: np.ndarray, count: int) -> np.ndarray:
    if len(inputs) >= count:
        return np.ascontiguousarray(inputs[:count])
    repeats = -(-count // len(inputs))
    return np.ascontiguousarray(np.concatenate([inputs] * repeats)[:count])


# Each script prints one JSON line: the label it predicted and whether torch was imported.
_ONNX_SCRIPT = """
import json, sys
from cifar_edge.runtime import Classifier
model, image, provider, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with Classifier(model, provider=provider, intra_op_threads=threads) as classifier:
    label = classifier.predict(image).label
print(json.dumps({"label": label, "torch_loaded": "torch" in sys.modules}))
"""

_TORCH_PREAMBLE = """
import json, sys
import numpy as np
import torch
from cifar_edge.runtime.images import open_image_rgb
from cifar_edge.runtime.preprocess import normalize_batch, resize_to_contract
model, image, provider, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(threads)
device = "cuda" if provider == "cuda" else "cpu"
"""

_TORCH_FINISH = """
module = module.to(device)
pixels = resize_to_contract(open_image_rgb(image, contract.alpha_background), contract)
inputs = torch.from_numpy(normalize_batch(pixels[None], contract)).to(device)
with torch.inference_mode():
    index = int(module(inputs).argmax(1)[0])
print(json.dumps({"label": contract.class_names[index], "torch_loaded": True}))
"""

_EAGER_SCRIPT = (
    _TORCH_PREAMBLE
    + """
from cifar_edge.train.run.files import load_run
from cifar_edge.export.formats.tta import module_for_export
run = load_run(model)
module, contract = module_for_export(run.model, run.record), run.contract
"""
    + _TORCH_FINISH
)

_TORCHSCRIPT_SCRIPT = (
    _TORCH_PREAMBLE
    + """
from cifar_edge.runtime.contract import CONTRACT_METADATA_KEY, Contract
extra = {CONTRACT_METADATA_KEY: ""}
module = torch.jit.load(model, map_location="cpu", _extra_files=extra).eval()
contract = Contract.from_json(extra[CONTRACT_METADATA_KEY])
"""
    + _TORCH_FINISH
)

COLD_START_SCRIPTS = {"pytorch": _EAGER_SCRIPT, "torchscript": _TORCHSCRIPT_SCRIPT, "onnx": _ONNX_SCRIPT}


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
    engine: str  # a key of COLD_START_SCRIPTS
    model: Path  # the artifact (a run folder for "pytorch")
    image: Path
    provider: str
    threads: int


def _run_process(job: ColdStartJob, timeout_s: float) -> tuple[float, dict[str, Any]]:
    script = COLD_START_SCRIPTS[job.engine]
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
    samples: dict[Hashable, list[float]] = {key: [] for key in jobs}
    outputs: dict[Hashable, dict[str, Any]] = {}
    failed: dict[Hashable, str] = {}
    for _ in range(max(1, repeats.cold_starts)):
        for key, job in jobs.items():
            if key in failed:
                continue
            try:
                seconds, outputs[key] = _run_process(job, timeout_s)
            except ColdStartError as error:
                failed[key] = str(error)
                continue
            samples[key].append(seconds)
    results = {
        key: ColdStart(float(np.median(times)), str(outputs[key]["label"]), bool(outputs[key]["torch_loaded"]))
        for key, times in samples.items()
        if key not in failed and times
    }
    return results, failed
