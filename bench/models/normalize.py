"""Input normalization as the model's first layer, and the classifier skeleton that puts it there.

Keeping mean/std inside the model lets the data pipeline and every attack work in pixel units
([0,1] images, ε in pixels), whatever normalization a recipe uses (as in CFA's and CAAT's code).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class Normalize(nn.Module):
    """(x − mean) / std per channel; the identity when mean and std are both None.

    The statistics are non-persistent buffers: they are configuration (from the dataset), not learned
    state, so checkpoints of one architecture load into models built with or without normalization.
    """

    def __init__(self, in_channels: int, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None):
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError(f"give both mean and std or neither, got mean={mean}, std={std}")
        if mean is not None:
            mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
            if len(mean) != in_channels or len(std) != in_channels:
                raise ValueError(f"mean {mean} and std {std} must have one entry per input channel "
                                 f"({in_channels})")
            if min(std) <= 0:
                raise ValueError(f"std entries must be positive, got {std}")
        self.register_buffer("mean", None if mean is None else torch.tensor(mean).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("std", None if std is None else torch.tensor(std).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.mean is None:
            return x
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        if self.mean is None:
            return "identity"
        return f"mean={tuple(self.mean.flatten().tolist())}, std={tuple(self.std.flatten().tolist())}"


class Classifier(nn.Module):
    """normalize → features → linear head; the one place that implements `return_features`.

    Subclasses call `super().__init__` first (so `normalize` is the first child), build their body,
    set `self.head` (the final nn.Linear) and implement `features`, which maps normalized images to the
    flat penultimate vector fed to the head (what UIAT and other feature-space methods need).
    """

    head: nn.Linear

    def __init__(self, in_channels: int, mean: Sequence[float] | None, std: Sequence[float] | None):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.normalize = Normalize(in_channels, mean, std)

    def features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        feats = self.features(self.normalize(x))
        logits = self.head(feats)
        return (logits, feats) if return_features else logits
