"""Model registry: every architecture is rebuilt from its name and keyword arguments alone.

The name and kwargs go into ``run.json`` so ``cifar-export`` can rebuild the network with no code edit.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cifar_edge.runtime.common.command import first_line
from cifar_edge.runtime.contract import MAX_CLASSES, MAX_IMAGE_SIDE

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}
# Each architecture's checks of its keyword arguments: argument name -> (is it usable?, what it must be).
_ARGUMENT_RULES: dict[str, dict[str, tuple[Callable[[Any], bool], str]]] = {}

# Channel counts beyond this are not a small edge classifier (4096 x 4096 x 3 x 3 float32 is 600 MB per layer).
MAX_WIDTH = 4096


class ArchitectureError(ValueError):
    """An architecture name and keyword arguments that cannot build a model; ``str()`` names the argument."""


def register(
    name: str, rules: dict[str, tuple[Callable[[Any], bool], str]] | None = None
) -> Callable[[ModelFactory], ModelFactory]:
    def add(factory: ModelFactory) -> ModelFactory:
        _REGISTRY[name] = factory
        _ARGUMENT_RULES[name] = rules or {}
        return factory

    return add


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a fresh (randomly initialised) model; ``kwargs`` must be JSON-serialisable.

    Raises ArchitectureError (a ValueError) for an unknown name, an argument the architecture does not take, or a
    value out of its range (checked before anything is allocated).
    """
    factory = check_model_arguments(name, kwargs)
    try:
        return factory(**kwargs)
    except (TypeError, ValueError, RuntimeError) as error:  # a combination the per-argument checks let through
        raise ArchitectureError(f"{name} cannot be built from these arguments ({first_line(error)})") from None


def check_model_arguments(name: str, kwargs: dict[str, Any]) -> ModelFactory:
    """The factory of ``name`` when it takes every one of ``kwargs`` with a value in range; ArchitectureError if not."""
    try:
        factory = _REGISTRY[name]
    except (KeyError, TypeError):
        known = ", ".join(available_models())
        raise ArchitectureError(f"unknown model {name!r}; available: {known}") from None
    rules = _ARGUMENT_RULES[name]
    unknown = sorted(key for key in kwargs if key not in rules)
    if unknown:
        raise ArchitectureError(
            f"kwargs.{unknown[0]}: {name} takes no argument {unknown[0]!r} (it takes: {', '.join(sorted(rules))})"
        )
    for key, value in kwargs.items():
        usable, expected = rules[key]
        if not usable(value):
            raise ArchitectureError(f"kwargs.{key} must be {expected}, got {_short(value)}")
    return factory


def declared_num_classes(name: str, kwargs: dict[str, Any]) -> int | None:
    """How many scores the architecture outputs with ``kwargs`` (its default when they do not say)."""
    if "num_classes" in kwargs:
        classes: int = kwargs["num_classes"]
        return classes
    factory = _REGISTRY.get(name)
    default = inspect.signature(factory).parameters.get("num_classes") if factory is not None else None
    return default.default if default is not None and isinstance(default.default, int) else None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _int_in(low: int, high: int) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _list_of(count: int, item: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, (list, tuple)) and len(value) == count and all(item(v) for v in value)


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_CLASSES = (_int_in(2, MAX_CLASSES), f"an integer in 2..{MAX_CLASSES:,}")
_IMAGE_SIZE = (_list_of(2, _int_in(1, MAX_IMAGE_SIDE)), f"2 integers (height, width) in 1..{MAX_IMAGE_SIDE}")


@register("seed", {"num_classes": _CLASSES, "image_size": _IMAGE_SIZE})
def seed_net(num_classes: int = 10, image_size: tuple[int, int] | list[int] = (32, 32)) -> nn.Module:
    """The original tutorial network, exactly as published: no activation functions, 145,578 parameters."""
    if tuple(image_size) != (32, 32):
        raise ValueError("the seed network is defined for 32x32 inputs only (its Linear layer expects 1024)")
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, padding=2),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 5, padding=2),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(1024, 64),
        nn.Linear(64, num_classes),
    )


class ScaleFreeBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose scale stays fixed at 1 (only the shift learns): fewer parameters to tune, faster fits."""

    def __init__(self, num_features: int, momentum: float = 0.6, eps: float = 1e-12) -> None:
        super().__init__(num_features, momentum=1 - momentum, eps=eps)
        self.weight.requires_grad = False


class ConvGroup(nn.Module):
    """conv3x3 > maxpool2 > BN > GELU > conv3x3 > BN > GELU; with ``pool_first`` the pool comes before the first
    convolution, which then runs on a quarter of the positions (4x cheaper, coarser features)."""

    def __init__(self, in_channels: int, out_channels: int, pool_first: bool = False) -> None:
        super().__init__()
        self.pool_first = pool_first
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = ScaleFreeBatchNorm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = ScaleFreeBatchNorm(out_channels)
        self.activation = nn.GELU()
        # Identity (dirac) init of the first filters gives each conv an implicit residual path: faster early training.
        for conv in (self.conv1, self.conv2):
            nn.init.dirac_(conv.weight.data[: min(conv.in_channels, conv.out_channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.pool(x)) if self.pool_first else self.pool(self.conv1(x))
        x = self.activation(self.norm1(x))
        out: torch.Tensor = self.activation(self.norm2(self.conv2(x)))
        return out


class AirNet(nn.Module):
    """A fast-training 32x32 classifier: frozen patch-whitening stem, three conv groups, global max pool.

    The stem's weights are set from the training data by :meth:`init_whitening` (eigenvectors of the 2x2 patch
    covariance) and are then not trained.
    """

    def __init__(
        self,
        num_classes: int = 10,
        widths: tuple[int, int, int] | list[int] = (64, 256, 256),
        whiten_kernel: int = 2,
        logit_scale: float = 1 / 9,
        image_size: tuple[int, int] | list[int] = (32, 32),
        pool_first: tuple[bool, bool, bool] | list[bool] = (False, False, False),
    ) -> None:
        super().__init__()
        whiten_width = 2 * 3 * whiten_kernel**2
        self.whiten = nn.Conv2d(3, whiten_width, whiten_kernel, padding=0, bias=True)
        self.whiten.weight.requires_grad = False
        self.activation = nn.GELU()
        if len(widths) != 3 or len(pool_first) != 3:
            raise ValueError(f"airnet needs 3 widths and 3 pool_first flags, got {list(widths)} and {list(pool_first)}")
        w1, w2, w3 = widths
        early, middle, late = pool_first
        self.groups = nn.Sequential(
            ConvGroup(whiten_width, w1, early), ConvGroup(w1, w2, middle), ConvGroup(w2, w3, late)
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(w3, num_classes, bias=False)
        self.logit_scale = logit_scale

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the stem to whiten 2x2 patches of ``images`` (N, 3, H, W, float, already normalised)."""
        kernel = self.whiten.kernel_size[0]
        patches = images.float().unfold(2, kernel, 1).unfold(3, kernel, 1)
        patches = patches.transpose(1, 3).reshape(-1, 3, kernel, kernel)
        flat = patches.reshape(len(patches), -1)
        flat = flat - flat.mean(dim=0, keepdim=True)
        covariance = (flat.T @ flat) / len(flat)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).reshape(-1, 3, kernel, kernel)
        self.whiten.weight.copy_(torch.cat([filters, -filters]).to(self.whiten.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.whiten(x))
        x = self.pool(self.groups(x)).flatten(1)
        logits: torch.Tensor = self.head(x) * self.logit_scale
        return logits


_AIRNET_RULES = {
    "num_classes": _CLASSES,
    "widths": (_list_of(3, _int_in(1, MAX_WIDTH)), f"3 integers in 1..{MAX_WIDTH}"),
    "whiten_kernel": (_int_in(1, 8), "an integer in 1..8"),
    "logit_scale": (_finite_number, "a finite number"),
    "image_size": _IMAGE_SIZE,
    "pool_first": (_list_of(3, lambda flag: isinstance(flag, bool)), "3 booleans"),
}


@register("airnet", _AIRNET_RULES)
def airnet(**kwargs: Any) -> nn.Module:
    return AirNet(**kwargs)


# The size menu: each name fixes the three group widths (every other AirNet argument stays free). Doubling the
# widths costs up to 4x the FLOPs (the stem does not grow), so s/m/l span about 12x; m is the CPU default, l
# airbench94's full width.
AIRNET_SIZES: dict[str, tuple[int, int, int]] = {
    "airnet-s": (16, 64, 64),
    "airnet-m": (32, 128, 128),
    "airnet-l": (64, 256, 256),
}


def _sized_airnet(widths: tuple[int, int, int]) -> ModelFactory:
    def factory(**kwargs: Any) -> nn.Module:
        return AirNet(widths=list(widths), **kwargs)

    return factory


for _name, _widths in AIRNET_SIZES.items():
    register(_name, {key: rule for key, rule in _AIRNET_RULES.items() if key != "widths"})(_sized_airnet(_widths))


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
