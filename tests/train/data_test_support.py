"""What the data-layer tests use from the repository-wide ``tests/conftest.py``, loaded by its path.

``tests/conftest.py`` and ``tests/train/conftest.py`` both import under the name ``conftest``, so
``from conftest import ...`` gets whichever pytest loaded last; loading the root file by path is unambiguous.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
_spec = importlib.util.spec_from_file_location("cifar_edge_tests_root_conftest", _ROOT_CONFTEST)
assert _spec is not None and _spec.loader is not None
root_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(root_conftest)

SHARED_CIFAR_TRAIN: Path = root_conftest.SHARED_CIFAR_TRAIN
TINY_CLASSES: tuple[str, ...] = root_conftest.TINY_CLASSES
write_image_folder = root_conftest.write_image_folder
