"""Helpers for the export tests, importable by name (every tests/*/conftest.py imports as module ``conftest``).

What they need from the repository-wide ``tests/conftest.py`` is loaded from it by path, which is unambiguous.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

_ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
_spec = importlib.util.spec_from_file_location("cifar_edge_export_tests_root_conftest", _ROOT_CONFTEST)
assert _spec is not None and _spec.loader is not None
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)

SHARED_CAT_PHOTO: Path = _root.SHARED_CAT_PHOTO
TINY_CLASSES: tuple[str, ...] = _root.TINY_CLASSES
write_image_folder = _root.write_image_folder


def copy_run(source: Path, destination: Path) -> Path:
    """A private copy of a run folder (run.json + weights) so each test's artifacts stay its own."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("run.json", "model.safetensors"):
        shutil.copy2(source / name, destination / name)
    return destination
