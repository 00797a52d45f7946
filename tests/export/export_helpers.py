"""Helpers for the export tests, importable by name (every tests/*/conftest.py imports as module ``conftest``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tiny_data import SHARED_CAT_PHOTO, TINY_CLASSES, write_image_folder  # noqa: F401  (re-exported)

from cifar_edge.export.benchmark.artifacts import BenchConfig


def copy_run(source: Path, destination: Path) -> Path:
    """A private copy of a run folder (run.json + weights) so each test's artifacts stay its own."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("run.json", "model.safetensors"):
        shutil.copy2(source / name, destination / name)
    return destination


def quick_bench_config(run_dir: Path, data: Path | str, variant: str) -> BenchConfig:
    """cifar-bench on one row of a run, CPU only, one thread, the quick timing and no cold start: for tests."""
    return BenchConfig(
        run_dir=run_dir,
        formats=(variant,),
        providers=("cpu",),
        data=str(data),
        quick=True,
        cold_start=False,
        threads=1,
    )
