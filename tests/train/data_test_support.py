"""What the data-layer tests share: the tiny image data and the shared-data paths."""

from __future__ import annotations

from tiny_data import SHARED_CIFAR_TRAIN, TINY_CLASSES, write_image_folder  # noqa: F401  (re-exported)
