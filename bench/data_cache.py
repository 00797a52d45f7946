"""Data loading: the first load of an image folder (hash + decode + write cache) against the cached second load.

    .venv/bin/python bench/data_cache.py [DATASET] [--limit-per-class N]

DATASET defaults to the shared 50,000-image JPEG copy of CIFAR-10. The cache goes to a fresh temporary folder, so
the first load really decodes. Prints both wall times and their ratio (the baseline is the first load, same run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from cifar_edge.train.data.load import load_splits

SHARED_DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default=str(SHARED_DATASET))
    parser.add_argument("--limit-per-class", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None, help="decode processes (default: all cores)")
    args = parser.parse_args()
    if not Path(args.dataset).is_dir():
        print(f"{args.dataset}: dataset folder not found", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cifar-edge-bench-cache-") as cache_dir:
        times = []
        for _ in range(2):
            started = time.perf_counter()
            splits = load_splits(
                args.dataset,
                cache_dir=cache_dir,
                limit_per_class=args.limit_per_class,
                workers=args.workers,
                show_progress=False,
            )
            times.append(time.perf_counter() - started)
            print(
                f"{splits.description['cache']['status']:>4}: {times[-1]:6.2f} s  "
                f"({splits.description['counts']['train'] + splits.description['counts']['val']:,} images)"
            )
    first, cached = times
    print(f"cached load is {first / cached:.1f}x faster than the first load ({first:.2f} s -> {cached:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
