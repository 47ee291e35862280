"""The model registry: names → (factory, one-line description), and `build_model`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from torch import nn

from bench.registry import Registry

ModelFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture; `factory(num_classes=, in_channels=, image_size=, mean=, std=, **options)`."""

    name: str
    factory: ModelFactory
    description: str


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(name: str, factory: ModelFactory, description: str) -> None:
    MODELS.register(name)(ModelSpec(name, factory, description))


def describe(name: str) -> str:
    """One-line description of a registered model (for `python -m bench list`)."""
    return MODELS.get(name).description


def build_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                **options: Any) -> nn.Module:
    """Build a freshly initialised model whose first layer normalizes with mean/std (None → identity).

    `options` go to the architecture's constructor (e.g. `dropout=0.3` for N-FGSM's WRN-28-10).
    """
    spec = MODELS.get(name)
    for arg, value, low in (("num_classes", num_classes, 2), ("in_channels", in_channels, 1),
                            ("image_size", image_size, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{arg} must be an int >= {low}, got {value!r}")
    return spec.factory(num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                        mean=mean, std=std, **options)
