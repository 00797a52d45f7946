"""Decoding cost per image: Pillow's path against the runtime's (libjpeg-turbo's fast path for plain JPEGs), in one
run on the same files.

Both sides turn a file into the contract's uint8 pixels: ``open_image_rgb`` + ``resize_to_contract`` (Pillow only,
the path before runtime/jpeg.py) and ``file_pixels`` (what the runtime, cifar-eval, the export gate and training
use now). Rounds alternate between the two so that other load hits both alike; the figure is CPU time per image
(one thread), median over rounds, and the ratio between them. Both sides are also checked to give the same pixels.

    .venv/bin/python bench/decode.py [--images 2000] [--rounds 7] [--folder DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cifar_edge.export.benchmark.timing import interleaved_rounds, medians
from cifar_edge.runtime.contract import Contract
from cifar_edge.runtime.hardware import cpu_features
from cifar_edge.runtime.images import open_image_rgb
from cifar_edge.runtime.preprocess import file_pixels, resize_to_contract

CIFAR_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg" / "train"


def pillow_pixels(path: Path, contract: Contract) -> np.ndarray:
    return resize_to_contract(open_image_rgb(path, contract.alpha_background), contract)


def cpu_us_per_image(decode: Callable[[Path, Contract], np.ndarray], files: list[Path], contract: Contract) -> float:
    start = time.process_time()
    for path in files:
        decode(path, contract)
    return (time.process_time() - start) / len(files) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=CIFAR_TRAIN, help="image files, searched recursively")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    files = sorted(path for path in args.folder.rglob("*") if path.is_file())
    if not files:
        parser.error(f"{args.folder}: no files")
    files = files[:: max(1, len(files) // args.images)][: args.images]
    contract = Contract()
    mismatched = sum(not np.array_equal(pillow_pixels(p, contract), file_pixels(p, contract)) for p in files)
    sides = {"pillow": pillow_pixels, "runtime": file_pixels}
    jobs = {name: (lambda decode=decode: cpu_us_per_image(decode, files, contract)) for name, decode in sides.items()}
    median_us = medians(interleaved_rounds(jobs, args.rounds).results)
    record = {
        "cpu": cpu_features(),
        "images": len(files),
        "folder": str(args.folder),
        "rounds": args.rounds,
        "cpu_us_per_image": {name: round(value, 1) for name, value in median_us.items()},
        "speedup": round(median_us["pillow"] / median_us["runtime"], 2),
        "pixel_mismatches": mismatched,
    }
    print(f"{len(files)} files from {args.folder}, {args.rounds} alternating rounds, CPU time per image (median)")
    for name, value in median_us.items():
        print(f"  {name:8s} {value:7.1f} us")
    print(f"  runtime path: {record['speedup']:.2f}x faster than Pillow's; pixels differ on {mismatched} files")
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
