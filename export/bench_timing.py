"""Timing for ``cifar-bench``: latency at batch 1, throughput at a large batch, and process cold start.

- Latency and throughput are model-only: the inputs are already preprocessed float32 arrays in memory, so the
  numbers compare the engines, not the image decoder. Each is preceded by warm-up calls that are not counted.
- Latency: one image per call, ``repeats`` timed calls; p50 and p95 of the per-call times.
- Throughput: ``repeats`` timed calls on the same batch; images / median call time.
- Cold start: wall time of a fresh Python process that loads the artifact and classifies one image file, end to end
  (interpreter start, imports, model load, decode, inference); the median of ``repeats`` processes. ONNX goes
  through the torch-free runtime only (the process reports whether torch got imported); PyTorch and TorchScript
  load with torch, the way a PyTorch user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Forward = Callable[[np.ndarray], Any]


@dataclass(frozen=True)
class Repeats:
    """How much timing to do; ``cifar-bench --quick`` uses QUICK."""

    latency_warmup: int = 10
    latency_calls: int = 100  # p95 of 100 samples is the 95th-slowest-but-5 call: stable enough
    throughput_warmup: int = 2
    throughput_calls: int = 10
    cold_starts: int = 3  # each is a whole process (seconds for torch): a median of 3 absorbs one outlier


FULL = Repeats()
QUICK = Repeats(latency_warmup=2, latency_calls=5, throughput_warmup=1, throughput_calls=2, cold_starts=1)


def latency_ms(forward: Forward, inputs: np.ndarray, repeats: Repeats) -> tuple[float, float]:
    """(p50, p95) milliseconds of single-image calls, cycling through the first images of ``inputs``."""
    singles = [inputs[index : index + 1] for index in range(min(len(inputs), 16))]
    for call in range(repeats.latency_warmup):
        forward(singles[call % len(singles)])
    samples = []
    for call in range(repeats.latency_calls):
        batch = singles[call % len(singles)]
        started = time.perf_counter()
        forward(batch)
        samples.append(time.perf_counter() - started)
    return float(np.percentile(samples, 50) * 1e3), float(np.percentile(samples, 95) * 1e3)


def throughput(forward: Forward, inputs: np.ndarray, batch_size: int, repeats: Repeats) -> float:
    """Images per second at ``batch_size`` (the inputs are tiled when there are fewer images than that)."""
    batch = tile_to(inputs, batch_size)
    for _ in range(repeats.throughput_warmup):
        forward(batch)
    samples = []
    for _ in range(max(1, repeats.throughput_calls)):
        started = time.perf_counter()
        forward(batch)
        samples.append(time.perf_counter() - started)
    return batch_size / float(np.median(samples))


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
from cifar_edge.train.run_files import load_run
from cifar_edge.export.tta import module_for_export
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


def cold_start(
    engine: str, model: Path, image: Path, provider: str, threads: int, repeats: Repeats, timeout_s: float = 300.0
) -> ColdStart:
    """Median wall time of ``repeats`` fresh processes that load ``model`` and classify ``image``."""
    script = COLD_START_SCRIPTS[engine]
    command = [sys.executable, "-c", script, str(model), str(image), provider, str(threads)]
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    samples, result = [], {}
    for _ in range(max(1, repeats.cold_starts)):
        started = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=environment)
        except subprocess.TimeoutExpired:
            raise ColdStartError(f"the cold-start process ran over {timeout_s:.0f} s") from None
        samples.append(time.perf_counter() - started)
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            raise ColdStartError(f"the cold-start process failed: {lines[-1] if lines else done.returncode}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    return ColdStart(float(np.median(samples)), str(result["label"]), bool(result["torch_loaded"]))
