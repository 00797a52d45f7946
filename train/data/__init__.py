"""Training data: CIFAR-10 or any ImageFolder tree, decoded once, cached, split, as uint8 arrays.

``load.py`` is the entry point (``load_splits``); ``DataError`` below is the one exception every module here raises.
"""

from __future__ import annotations


class DataError(ValueError):
    """The data cannot be loaded; ``str()`` is one line saying what was tried and what to do."""
