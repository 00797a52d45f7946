"""Training throughput of cifar-train's loop against the tutorial's plain loop, same images, same device, same run.

Both train the tutorial ("seed") network with plain SGD (lr 0.05) at batch 64 on the same decoded images:

- baseline: the tutorial's loop: a torch DataLoader over in-memory PIL images with a per-sample ``ToTensor``
  (shuffled, batch 64, main process), each batch copied to the device, contiguous NCHW float32;
- ours: ``fit()`` with the seed recipe: the whole uint8 set on the device, batches gathered and normalised there,
  channels_last, and bf16 autocast where the hardware has it natively (``--precision auto``: this CPU does).

The two run interleaved, step by step: ``fit``'s ``on_step`` hook runs one baseline step after each of our steps,
and each side is timed for its own steps only. Both therefore see the same machine load at the same moments (the
development machine is shared), so their ratio is stable even when the absolute numbers are not. The first steps of
each, and our epoch boundaries (evaluation, checkpointing), are left out. Prints images/s for both and the ratio.

    python bench/train_throughput.py [--images 10000] [--epochs 2] [--device auto] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import ToTensor

from cifar_edge.train import TrainConfig, fit
from cifar_edge.train.data.load import Splits, load_splits
from cifar_edge.train.environment import configure_threads, device_name, resolve_device
from cifar_edge.train.models import build_model
from cifar_edge.train.state import StepEvent

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"
BATCH_SIZE = 64
LR = 0.05
WARMUP_STEPS = 10


class InMemoryImages(Dataset):
    """The tutorial's dataset: PIL images in memory, ToTensor applied per sample on every access."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = [Image.fromarray(pixels, "RGB") for pixels in images]
        self.labels = labels.tolist()
        self.to_tensor = ToTensor()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.to_tensor(self.images[index]), self.labels[index]


class TutorialLoop:
    """The tutorial's training loop, advanced one step at a time and timed per step."""

    def __init__(self, splits: Splits, device: torch.device) -> None:
        torch.manual_seed(0)
        self.device = device
        self.model = build_model("seed", num_classes=len(splits.class_names)).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.criterion = nn.CrossEntropyLoss()
        dataset = InMemoryImages(splits.train_images, splits.train_labels)
        self.loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=0)
        self.batches = iter(self.loader)
        self.seconds = 0.0
        self.images = 0

    def step(self, timed: bool) -> None:
        started = time.perf_counter()
        try:
            images, labels = next(self.batches)
        except StopIteration:  # the next epoch
            self.batches = iter(self.loader)
            images, labels = next(self.batches)
        images, labels = images.to(self.device), labels.to(self.device)
        loss = self.criterion(self.model(images), labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        _sync(self.device)
        if timed:
            self.seconds += time.perf_counter() - started
            self.images += len(labels)


class Interleaved:
    """``fit(on_step=...)`` hook: books the time since the previous hook to our step, then runs a tutorial step."""

    def __init__(self, tutorial: TutorialLoop, train_images: int, device: torch.device) -> None:
        self.tutorial, self.train_images, self.device = tutorial, train_images, device
        self.last_exit: float | None = None
        self.seconds = 0.0
        self.images = 0

    def __call__(self, event: StepEvent) -> None:
        _sync(self.device)
        now = time.perf_counter()
        timed = event.global_step > WARMUP_STEPS
        # Step 1 of an epoch comes after evaluation and checkpointing: not a training step's time.
        if timed and event.step > 1 and self.last_exit is not None:
            self.seconds += now - self.last_exit
            self.images += min(BATCH_SIZE, self.train_images - (event.step - 1) * BATCH_SIZE)
        self.tutorial.step(timed)
        self.last_exit = time.perf_counter()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="ImageFolder root (with train/)")
    parser.add_argument("--images", type=int, default=10_000, help="training images (spread evenly over classes)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of our loop (the tutorial runs as many steps)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    args = parser.parse_args()

    if not (Path(args.data) / "train").is_dir():
        print(f"train_throughput: {args.data}/train not found; pass --data DIR", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    threads = configure_threads(device, args.threads)
    splits = load_splits(args.data, limit_per_class=max(1, args.images // 10), val_fraction=0.0, show_progress=False)
    count = len(splits.train_labels)

    tutorial = TutorialLoop(splits, device)
    ours = Interleaved(tutorial, count, device)
    with tempfile.TemporaryDirectory() as folder:
        config = TrainConfig(
            recipe="seed",
            epochs=args.epochs,
            batch_size=BATCH_SIZE,
            lr=LR,
            device=str(device),
            run_dir=str(Path(folder) / "run"),
            quiet=True,
            threads=threads,
        )
        fit(config, splits, on_step=ours)
    ours_rate, tutorial_rate = ours.images / ours.seconds, tutorial.images / tutorial.seconds
    result = {
        "device": str(device),
        "device_name": device_name(device),
        "threads": threads,
        "images": count,
        "epochs": args.epochs,
        "batch_size": BATCH_SIZE,
        "model": "seed",
        "timed_images": {"tutorial": tutorial.images, "cifar_train": ours.images},
        "tutorial_images_per_second": round(tutorial_rate, 1),
        "cifar_train_images_per_second": round(ours_rate, 1),
        "ratio": round(ours_rate / tutorial_rate, 3),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"seed net, batch {BATCH_SIZE}, {count} images, {args.epochs} epochs on {result['device_name']} "
            f"[{device}, {threads} threads], the two loops interleaved step by step:\n"
            f"  tutorial loop (DataLoader, per-sample ToTensor): {result['tutorial_images_per_second']:8.1f} img/s\n"
            f"  cifar-train loop (uint8 set on the device):      {result['cifar_train_images_per_second']:8.1f} img/s\n"
            f"  ratio: {result['ratio']:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
