"""CPU training steps of the default recipe's network with glibc's malloc as it comes against tuned
(``cifar_edge.train.environment.tune_malloc``, what cifar-train does on the CPU unless ``--no-tune-malloc``).

The setting is process-wide and permanent, so each measurement is a fresh child process: it builds the default
recipe's AirNet (channels_last, bf16 autocast where the CPU has it natively, label-smoothed cross-entropy, SGD),
trains a few warm-up steps on a random batch (random pixels cost what real ones do), then times ``--steps`` steps.
Untuned and tuned children alternate for ``--rounds`` rounds, so both see the same machine load over time; the
report gives every round, the medians and their ratio.

    python bench/malloc_tuning.py [--rounds 4] [--steps 12] [--batch-size 512] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from cifar_edge.export.benchmark.timing import interleaved_rounds, medians

CHILD = """
import json, sys, time
import torch
from torch import nn
from cifar_edge.train.environment import available_cpus, device_name, resolve_precision, tune_malloc
from cifar_edge.train.models import build_model
from cifar_edge.train.recipes import DEFAULT
mode, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tuned = tune_malloc() if mode == "tuned" else False
torch.set_num_threads(available_cpus())
torch.manual_seed(0)
model = build_model(DEFAULT.model, **DEFAULT.model_kwargs).to(memory_format=torch.channels_last)
optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
criterion = nn.CrossEntropyLoss(label_smoothing=DEFAULT.label_smoothing)
dtype = resolve_precision("auto", torch.device("cpu"))
inputs = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
labels = torch.randint(0, 10, (batch,))
def step():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=dtype, enabled=dtype == torch.bfloat16):
        loss = criterion(model(inputs).float(), labels)
    loss.backward()
    optimizer.step()
for _ in range(3):
    step()
started = time.perf_counter()
for _ in range(steps):
    step()
seconds = time.perf_counter() - started
report = {"tuned": tuned, "images_per_second": steps * batch / seconds, "threads": torch.get_num_threads()}
report |= {"device": device_name(torch.device("cpu")), "precision": str(dtype).removeprefix("torch.")}
print(json.dumps(report))
"""


def measure(mode: str, steps: int, batch_size: int) -> dict:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # glibc's defaults
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(steps), str(batch_size)],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="untuned/tuned pairs of child processes")
    parser.add_argument("--steps", type=int, default=12, help="timed training steps per child")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the text report")
    args = parser.parse_args()

    jobs = {mode: (lambda mode=mode: measure(mode, args.steps, args.batch_size)) for mode in ("untuned", "tuned")}
    reports = interleaved_rounds(jobs, args.rounds).results  # each mode's child reports, round by round
    if not all(report["tuned"] for report in reports["tuned"]):
        sys.exit("tune_malloc() did not take effect here (not glibc, or MALLOC_* set): nothing to compare")
    speeds = {mode: [report["images_per_second"] for report in runs] for mode, runs in reports.items()}
    median_speeds = medians(speeds)
    first = reports["tuned"][0]
    result = {
        "device": first["device"],
        "threads": first["threads"],
        "precision": first["precision"],
        "batch_size": args.batch_size,
        "steps_per_child": args.steps,
        "untuned_images_per_second": [round(v, 1) for v in speeds["untuned"]],
        "tuned_images_per_second": [round(v, 1) for v in speeds["tuned"]],
        "ratio_of_medians": round(median_speeds["tuned"] / median_speeds["untuned"], 3),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['device']}, {result['threads']} threads, {result['precision']}, batch {args.batch_size}")
    for mode in ("untuned", "tuned"):
        rounds_text = " ".join(f"{v:6.0f}" for v in speeds[mode])
        print(f"  {mode:8s} img/s per round: {rounds_text}   median {median_speeds[mode]:6.0f}")
    print(f"  ratio (tuned / untuned medians): {result['ratio_of_medians']:.3f}x")


if __name__ == "__main__":
    main()
