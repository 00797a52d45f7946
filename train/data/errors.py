"""The one exception the data layer raises for bad data or bad data arguments (re-exported by ``train.data``)."""

from __future__ import annotations


class DataError(ValueError):
    """The data cannot be loaded; ``str()`` is one line saying what was tried and what to do."""
