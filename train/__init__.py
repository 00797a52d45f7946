"""Training: ``from cifar_edge.train import TrainConfig, fit``.

Importing this package imports torch (``fit`` needs it); matplotlib and torchvision are only imported when used.
"""

from cifar_edge.train.config import TrainConfig
from cifar_edge.train.fit import FitResult, fit

__all__ = ["FitResult", "TrainConfig", "fit"]
