"""Measuring the machine before a budgeted run's clock: the step speed of each candidate batch size, the speed of
an evaluation pass, the cost of an epoch's saving.

Nothing measured is kept: the model's weights and BatchNorm statistics are put back exactly, each candidate steps
its own scratch optimizer (the run's does not exist yet), and no global random numbers are drawn, so a budgeted run
computes what the same plan given as fixed numbers would.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

from cifar_edge.runtime.common.atomic_io import atomic_write_bytes, atomic_write_text
from cifar_edge.runtime.common.names import CHECKPOINT_FILE, CURVES_PNG, METRICS_CSV, RUN_JSON, WEIGHTS_FILE
from cifar_edge.train.augment import draw_epoch, normalize
from cifar_edge.train.budget.plan import Candidate, Workload
from cifar_edge.train.checkpoint import capture_rng_state, to_cpu, write_checkpoint
from cifar_edge.train.optim import build_optimizer
from cifar_edge.train.recipes import Recipe
from cifar_edge.train.reporting import CURVES_REFRESH_S, write_curves
from cifar_edge.train.state import DeviceData

# Optimizer steps per candidate: untimed first (the first steps pay for allocations and kernel choices), then timed;
# the median of the timed steps is the candidate's step time.
WARM_STEPS, PROBE_STEPS = 2, 3
# Every candidate is timed twice, the second round in reverse order, and keeps its faster round: timed once, the
# first candidate pays for the machine warming up and loses to the last at the same steady speed (docs/training.md,
# "Time budget"). A second visit needs one untimed step to bring its batch shape's buffers back.
ROUNDS, REWARM_STEPS = 2, 1
# Times an epoch's saving is timed (the median counts): one sync to disk can stall on a busy machine.
SAVING_REPEATS = 3
# A few epochs' rows for the curves drawn while timing the per-epoch saving (a run redraws curves.png each epoch).
_SAMPLE_ROWS = [
    {"epoch": e, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5} for e in (1, 2, 3)
]


@dataclass(frozen=True)
class ProbeInputs:
    """What the probe runs on besides the model: the session's data on the device, in the run's precision."""

    train_data: DeviceData
    val_data: DeviceData
    mean: torch.Tensor
    std: torch.Tensor
    precision: torch.dtype
    device: torch.device
    world_size: int = 1
    scratch_dir: Path | None = None  # an existing folder on the run folder's disk, for timing its writes; None = tmp


def probe(
    model: nn.Module, inputs: ProbeInputs, recipes: list[Recipe], clock: Callable[[], float]
) -> tuple[list[Candidate], Workload]:
    """The measured speed of ``model`` (the session's, whitened, on the device) for each recipe in ``recipes`` (one
    per candidate batch size, the run's own first) and the run's other costs, timed by ``clock``; the model's state
    is restored before this returns."""
    saved = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    try:
        fastest: dict[int, float] = {}
        optimizer = None
        for round_index in range(ROUNDS):
            for recipe in recipes if round_index % 2 == 0 else recipes[::-1]:
                warm = WARM_STEPS if round_index == 0 else REWARM_STEPS
                speed, optimizer = _step_speed(model, inputs, recipe, clock, warm)
                fastest[recipe.batch_size] = max(speed, fastest.get(recipe.batch_size, 0.0))
        candidates = [Candidate(recipe.batch_size, fastest[recipe.batch_size]) for recipe in recipes]
        monitor, final = _eval_speeds(model, inputs, recipes[0].eval_batch_size, clock)
        saving, curves = _saving_seconds(model, optimizer, clock, inputs.scratch_dir)
    finally:
        model.load_state_dict(saved)
        for parameter in model.parameters():
            parameter.grad = None
        model.train()
    val_images = -(-len(inputs.val_data) // inputs.world_size)  # under torchrun each rank scores its share
    workload = Workload(
        train_images=len(inputs.train_data),
        val_images=val_images,
        world_size=inputs.world_size,
        monitor_images_per_s=monitor,
        final_images_per_s=final,
        epoch_overhead_s=saving,
        curves_s=curves,
        curves_every_s=CURVES_REFRESH_S,
    )
    return candidates, workload


def _step_speed(
    model: nn.Module, inputs: ProbeInputs, recipe: Recipe, clock: Callable[[], float], warm_steps: int
) -> tuple[float, torch.optim.Optimizer]:
    """Training images per second (all ranks together) of ``recipe``'s step after ``warm_steps`` untimed ones:
    gather and augment, forward, loss, backward, optimizer step, as the loop runs them."""
    data = inputs.train_data
    optimizer = build_optimizer(model, recipe)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    size = min(len(data), recipe.batch_size // inputs.world_size)
    draw = draw_epoch(  # seed 0, epoch 0: any draw will do
        len(data),
        0,
        0,
        crop_padding=recipe.crop_padding,
        flip=recipe.flip,
        flip_mode=recipe.flip_mode,
        device=data.images.device,
    )
    model.train()
    seconds, last = [], 0.0
    for index in range(warm_steps + PROBE_STEPS):
        if index == warm_steps:
            last = _read(clock, inputs.device)
        batch = normalize(draw.batch(data.images, 0, size), inputs.mean, inputs.std)
        with _autocast(inputs):
            loss = criterion(model(batch).float(), data.labels[draw.order[:size]])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if index >= warm_steps:
            now = _read(clock, inputs.device)
            seconds.append(now - last)
            last = now
    return size * inputs.world_size / max(statistics.median(seconds), 1e-9), optimizer


@torch.no_grad()
def _eval_speeds(
    model: nn.Module, inputs: ProbeInputs, batch_size: int, clock: Callable[[], float]
) -> tuple[float, float]:
    """Images per second of one evaluation pass (per rank): in the training precision (the mid-run monitor) and in
    float32 (the last epoch's evaluation and its TTA passes); (0, 0) without validation images."""
    data = inputs.val_data
    if len(data) == 0:
        return 0.0, 0.0
    size = min(len(data), batch_size)
    batch = normalize(data.images[:size].permute(0, 3, 1, 2), inputs.mean, inputs.std)
    model.eval()
    speeds: list[float] = []
    for training_precision in (True, False):
        if not training_precision and inputs.precision == torch.float32:
            speeds.append(speeds[0])  # the same arithmetic: measured once
            continue
        with _autocast(inputs) if training_precision else contextlib.nullcontext():
            model(batch)  # untimed: the first pass at a shape pays for its buffers
            start = _read(clock, inputs.device)
            model(batch)
            speeds.append(size / max(_read(clock, inputs.device) - start, 1e-9))
    model.train()
    return speeds[0], speeds[1]


def _saving_seconds(
    model: nn.Module, optimizer: torch.optim.Optimizer | None, clock: Callable[[], float], scratch_dir: Path | None
) -> tuple[float, float]:
    """What an epoch's end costs besides evaluation, written as the run writes it (atomically, synced) in a scratch
    folder beside the run: (the checkpoint, model file, run.json and metrics.csv; a redraw of the curves)."""
    import matplotlib.figure  # noqa: F401  (untimed: a run imports it once, not every epoch)

    with tempfile.TemporaryDirectory(dir=scratch_dir, prefix=".cifar-train-probe-") as name:
        folder, seconds = Path(name), []
        for _ in range(SAVING_REPEATS):
            start = clock()
            state = to_cpu(model.state_dict())
            payload = {"model": state, "optimizer": None if optimizer is None else to_cpu(optimizer.state_dict())}
            write_checkpoint(folder / CHECKPOINT_FILE, {**payload, "rng": capture_rng_state()})
            weights = safetensors.torch.save({key: value.contiguous() for key, value in state.items()})
            atomic_write_bytes(folder / WEIGHTS_FILE, weights)
            for file_name in (RUN_JSON, METRICS_CSV):
                atomic_write_text(folder / file_name, json.dumps(_SAMPLE_ROWS))
            seconds.append(clock() - start)
        start = clock()
        write_curves(folder / CURVES_PNG, _SAMPLE_ROWS)
        return statistics.median(seconds), clock() - start


def _autocast(inputs: ProbeInputs) -> contextlib.AbstractContextManager[object]:
    if inputs.precision == torch.bfloat16:
        return torch.autocast(inputs.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _read(clock: Callable[[], float], device: torch.device) -> float:
    """The clock once the device has finished the work queued so far (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return clock()
