"""Training throughput of cifar-train's loop against the tutorial's plain loop, same images, same device, same run.

Both train the tutorial ("seed") network with plain SGD (lr 0.05) at batch 64 on the same decoded images:

- baseline: the tutorial's loop: a torch DataLoader over in-memory PIL images with a per-sample ``ToTensor``
  (shuffled, batch 64, main process), each batch copied to the device, contiguous NCHW float32;
- ours: ``fit()`` with the seed recipe: the whole uint8 set on the device, batches gathered and normalised there,
  channels_last (and bf16 autocast on CUDA).

Each method trains ``--rounds`` epochs, alternating, and its best epoch counts (the machine may be shared; the best
epoch is the least disturbed one). Prints images/s for both and the ratio.

    python bench/train_throughput.py [--images 10000] [--device auto] [--rounds 2]
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
from cifar_edge.train.data import Splits, load_splits
from cifar_edge.train.environment import configure_threads, device_name, resolve_device
from cifar_edge.train.models import build_model

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"
BATCH_SIZE = 64
LR = 0.05


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


def baseline_epoch(
    model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, device: torch.device
) -> float:
    """One epoch of the tutorial's loop; returns images per second."""
    criterion = nn.CrossEntropyLoss()
    model.train()
    seen = 0
    started = time.perf_counter()
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        loss = criterion(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(labels)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - started)


def our_epoch(splits: Splits, device: torch.device, seed: int, threads: int) -> float:
    """One epoch of fit() with the seed recipe; returns its measured training images per second."""
    with tempfile.TemporaryDirectory() as folder:
        config = TrainConfig(
            recipe="seed",
            epochs=1,
            batch_size=BATCH_SIZE,
            lr=LR,
            device=str(device),
            run_dir=str(Path(folder) / "run"),
            seed=seed,
            quiet=True,
            threads=threads,
        )
        return fit(config, splits).metrics[-1]["train_images_per_second"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="ImageFolder root (with train/)")
    parser.add_argument("--images", type=int, default=10_000, help="training images (spread evenly over classes)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=2, help="epochs per method, alternating; the best counts")
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

    torch.manual_seed(0)
    model = build_model("seed", num_classes=len(splits.class_names)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loader = DataLoader(
        InMemoryImages(splits.train_images, splits.train_labels), batch_size=BATCH_SIZE, shuffle=True, num_workers=0
    )
    baseline, ours = [], []
    for round_index in range(args.rounds):
        baseline.append(baseline_epoch(model, loader, optimizer, device))
        ours.append(our_epoch(splits, device, seed=round_index, threads=threads))
        if not args.json:
            print(f"round {round_index + 1}: tutorial {baseline[-1]:8.1f} img/s, cifar-train {ours[-1]:8.1f} img/s")
    result = {
        "device": str(device),
        "device_name": device_name(device),
        "threads": threads,
        "images": count,
        "batch_size": BATCH_SIZE,
        "model": "seed",
        "tutorial_images_per_second": round(max(baseline), 1),
        "cifar_train_images_per_second": round(max(ours), 1),
        "ratio": round(max(ours) / max(baseline), 3),
        "rounds": {"tutorial": [round(x, 1) for x in baseline], "cifar_train": [round(x, 1) for x in ours]},
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"seed net, batch {BATCH_SIZE}, {count} images on {result['device_name']} "
            f"[{device}, {threads} threads], best of {args.rounds} epochs each:\n"
            f"  tutorial loop (DataLoader, per-sample ToTensor): {result['tutorial_images_per_second']:8.1f} img/s\n"
            f"  cifar-train loop (uint8 set on the device):      {result['cifar_train_images_per_second']:8.1f} img/s\n"
            f"  ratio: {result['ratio']:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
