"""A config dataclass's field defaults, read by the CLIs so that no option retypes one."""

from __future__ import annotations

import dataclasses
from typing import Any


def default_of(config: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``config`` (its default_factory called when it has one)."""
    spec = config.__dataclass_fields__[name]
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    if spec.default is dataclasses.MISSING:
        raise ValueError(f"{config.__name__}.{name} has no default")
    return spec.default
