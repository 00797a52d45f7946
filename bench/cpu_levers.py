"""CPU training speed levers for the default recipe's network, side by side in one process, on this CPU.

One training step of the default recipe's AirNet (label-smoothed cross-entropy, SGD with momentum, random pixels:
they cost what real ones do) for each setting, against cifar-train's own CPU choice (channels_last, every core,
oneDNN on, the recipe's batch 512): the memory format, one thread against all, oneDNN off (ATen's own
convolutions), and batch 256 / 1024. Rounds are interleaved, so machine load hits every setting alike; each
figure is the median img/s of its rounds. Prints the CPU's vector ISA as torch sees it, so a run under
``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` says it was capped.

    python bench/cpu_levers.py [--precision fp32] [--rounds 5] [--steps 6] [--json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import torch
from torch import nn

from cifar_edge.export.benchmark.timing import interleaved_rounds, medians, per_second
from cifar_edge.train.config import PRECISIONS
from cifar_edge.train.environment import available_cpus, describe_environment, resolve_precision
from cifar_edge.train.models import build_model
from cifar_edge.train.recipes import DEFAULT

BASELINE = "cifar-train's choice: channels_last, all cores, oneDNN, batch 512"
# name -> (channels_last, threads (None = all cores), oneDNN on, batch)
SETTINGS: dict[str, tuple[bool, int | None, bool, int]] = {
    BASELINE: (True, None, True, 512),
    "contiguous (NCHW)": (False, None, True, 512),
    "one thread": (True, 1, True, 512),
    "oneDNN off": (True, None, False, 512),
    "batch 256": (True, None, True, 256),
    "batch 1024": (True, None, True, 1024),
}


def make_step(channels_last: bool, batch: int, dtype: torch.dtype) -> Callable[[], None]:
    """One optimizer step of a fresh default network on a fixed random batch."""
    torch.manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(DEFAULT.model, **DEFAULT.model_kwargs).to(memory_format=memory_format)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    criterion = nn.CrossEntropyLoss(label_smoothing=DEFAULT.label_smoothing)
    inputs = torch.randn(batch, 3, 32, 32).contiguous(memory_format=memory_format)
    labels = torch.randint(0, 10, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype == torch.bfloat16):
            loss = criterion(model(inputs).float(), labels)
        loss.backward()
        optimizer.step()

    return step


def timed(setting: tuple[bool, int | None, bool, int], step: Callable[[], None], steps: int) -> float:
    _, threads, onednn, batch = setting
    torch.set_num_threads(threads or available_cpus())
    torch.backends.mkldnn.enabled = onednn
    try:
        step()  # warm-up: kernel choice and allocations for this setting

        def timed_steps() -> int:
            for _ in range(steps):
                step()
            return steps * batch

        return per_second(timed_steps)
    finally:
        torch.backends.mkldnn.enabled = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="training arithmetic (auto: native)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per setting and round")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the text report")
    args = parser.parse_args()
    dtype = resolve_precision(args.precision, torch.device("cpu"))
    steps = {name: make_step(setting[0], setting[3], dtype) for name, setting in SETTINGS.items()}
    jobs = {
        name: (lambda setting=setting, step=steps[name]: timed(setting, step, args.steps))
        for name, setting in SETTINGS.items()
    }
    rates = interleaved_rounds(jobs, args.rounds).results
    median_rates = medians(rates)
    environment = describe_environment(torch.device("cpu"), dtype)
    record = {"environment": environment, "rounds": rates, "median_img_per_s": median_rates}
    if args.json:
        print(json.dumps(record))
        return
    print(
        f"{environment['device_name']}, {environment['cpu_count']} CPUs, {environment['precision']}, "
        f"vector ISA {environment.get('cpu_capability')} (oneDNN cap: {environment.get('onednn_max_cpu_isa')})"
    )
    for name, rate in median_rates.items():
        print(f"{name:66} {rate:8,.0f} img/s = {rate / median_rates[BASELINE]:.2f}x")


if __name__ == "__main__":
    main()
