"""Helpers for the export tests, importable by name (every tests/*/conftest.py imports as module ``conftest``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tiny_data import SHARED_CAT_PHOTO, TINY_CLASSES, write_image_folder  # noqa: F401  (re-exported)


def copy_run(source: Path, destination: Path) -> Path:
    """A private copy of a run folder (run.json + weights) so each test's artifacts stay its own."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("run.json", "model.safetensors"):
        shutil.copy2(source / name, destination / name)
    return destination
