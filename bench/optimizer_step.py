"""One optimizer step of a recipe's real parameter groups: FilterMuon's per-parameter loop against its batched
(``foreach``) step, with torch's SGD (what the airbench recipe uses) for scale, on the same device in the same run.

A step of a small network on a GPU is bound by how many kernels the host launches, not by arithmetic, so the
count of tensor operations per step (views excluded: they launch nothing) is the measure that carries over from
this CPU to a GPU; the seconds are measured too, and only mean anything on the device they were measured on.
Each variant gets fresh random gradients, a few untimed steps, then ``--steps`` timed steps; the variants take
turns for ``--rounds`` rounds so they see the same machine load, and the report gives medians and ratios.

    python bench/optimizer_step.py [--recipe airbench] [--device cpu|cuda] [--steps 50] [--rounds 3] [--json]

Exit status: 0, or 2 for a device this machine does not have (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from cifar_edge.export.benchmark.timing import interleaved_rounds, medians
from cifar_edge.train.environment import device_name, resolve_device
from cifar_edge.train.models import build_model
from cifar_edge.train.optim import build_optimizer
from cifar_edge.train.recipes import get_recipe

VIEW_OPS = {"view", "_unsafe_view", "t", "transpose", "unbind", "select", "slice", "expand", "alias", "detach"}


class OperationCount(TorchDispatchMode):
    """Counts the aten operations dispatched inside it, views excluded."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ not in VIEW_OPS:
            self.count += 1
        return func(*args, **(kwargs or {}))


def build_optimizers(recipe_name: str, device: torch.device) -> dict[str, tuple[torch.optim.Optimizer, list]]:
    """Each variant on its own freshly built copy of the recipe's network (identical initial weights), with the
    optimizer cifar-train builds, its multi-tensor step forced on or off."""
    variants: dict[str, tuple[torch.optim.Optimizer, list]] = {}
    for label, optimizer, foreach in (
        ("muon, per-parameter loop", "muon", False),
        ("muon, batched (foreach)", "muon", True),
        ("torch SGD, foreach", "sgd", True),
        ("torch SGD, loop", "sgd", False),
    ):
        recipe = replace(get_recipe(recipe_name), optimizer=optimizer)
        torch.manual_seed(0)
        model = build_model(recipe.model, **recipe.model_kwargs).to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        variants[label] = (build_optimizer(model, recipe, foreach=foreach), params)
    return variants


def time_steps(optimizer: torch.optim.Optimizer, params: list, steps: int, sync: Callable[[], None]) -> float:
    """Mean seconds per step over ``steps`` steps (gradients refreshed in place, outside the clock)."""
    total = 0.0
    for _ in range(steps):
        for parameter in params:
            parameter.grad.normal_()
        sync()
        start = time.perf_counter()
        optimizer.step()
        sync()
        total += time.perf_counter() - start
    return total / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="airbench", help="whose network and parameter groups (default airbench)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    variants = build_optimizers(args.recipe, device)
    operations = {}
    for label, (optimizer, params) in variants.items():
        for parameter in params:
            parameter.grad = torch.randn_like(parameter)
        for _ in range(3):  # momentum buffers exist from here on, as in every step but a run's first
            optimizer.step()
        with OperationCount() as counter:
            optimizer.step()
        operations[label] = counter.count
    jobs = {
        label: (lambda optimizer=optimizer, params=params: time_steps(optimizer, params, args.steps, sync))
        for label, (optimizer, params) in variants.items()
    }
    median_seconds = medians(interleaved_rounds(jobs, args.rounds).results)
    loop, batched = "muon, per-parameter loop", "muon, batched (foreach)"
    report = {
        "recipe": args.recipe,
        "device": device_name(device),
        "operations_per_step": operations,
        "ms_per_step": {label: round(value * 1e3, 3) for label, value in median_seconds.items()},
        "operations_ratio_loop_over_batched": round(operations[loop] / operations[batched], 2),
        "time_ratio_loop_over_batched": round(median_seconds[loop] / median_seconds[batched], 2),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.recipe} recipe's parameter groups on {report['device']} ({args.rounds} rounds of {args.steps} steps)")
    for label in variants:
        print(f"  {label:26s} {operations[label]:5d} ops/step  {median_seconds[label] * 1e3:8.3f} ms/step")
    print(
        f"batched Muon: {report['operations_ratio_loop_over_batched']}x fewer operations, "
        f"{report['time_ratio_loop_over_batched']}x the speed of the loop"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
