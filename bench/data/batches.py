"""Shuffled minibatches with train augmentation, done on the training device as whole-batch tensor ops.

All randomness (order, crop offsets, flips) is drawn from one CPU torch.Generator passed per epoch, so an
epoch is reproduced exactly from that generator's state, whatever the device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from bench.data.registry import DatasetInfo
from bench.data.split import Split


@dataclass(frozen=True)
class AugmentSpec:
    """Random crop of the original size from the image padded by `padding`, then random horizontal flip."""

    padding: int
    pad_mode: str = "zeros"  # "zeros" | "reflect"
    flip: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.padding, int) or self.padding < 0:
            raise ValueError(f"padding={self.padding!r}; must be an int ≥ 0")
        if self.pad_mode not in ("zeros", "reflect"):
            raise ValueError(f"pad_mode={self.pad_mode!r}; allowed: 'zeros', 'reflect'")

    @classmethod
    def for_dataset(cls, info: DatasetInfo) -> "AugmentSpec":
        return cls(info.crop_padding, info.pad_mode, info.flip)

    @property
    def identity(self) -> bool:
        return self.padding == 0 and not self.flip


def augment(x: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """Crop + flip a float batch N×C×H×W in one gather from the padded batch.

    Draws, in this order: N crop offsets (rows, then columns) when padding > 0, then N flip coins when flip.
    """
    n, c, h, w = x.shape
    p = spec.padding
    dev = x.device
    rows = torch.arange(h, device=dev).expand(n, h)
    cols = torch.arange(w, device=dev).expand(n, w)
    if p > 0:
        x = F.pad(x, (p, p, p, p), mode="constant" if spec.pad_mode == "zeros" else "reflect")
        offsets = torch.randint(0, 2 * p + 1, (2, n, 1), generator=generator).to(dev)
        rows, cols = rows + offsets[0], cols + offsets[1]
    if spec.flip:
        flip = (torch.rand(n, 1, generator=generator) < 0.5).to(dev)
        cols = torch.where(flip, cols.flip(1), cols)  # a flipped crop reads the crop's columns backwards
    batch = torch.arange(n, device=dev)[:, None, None, None]
    chan = torch.arange(c, device=dev)[None, :, None, None]
    return x[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


class BatchStream:
    """Epochs of (x float [0,1], y, idx) batches from a Split held on `device`; idx = positions in the split."""

    def __init__(self, split: Split, batch_size: int, device: torch.device | str,
                 augment: AugmentSpec | None = None, shuffle: bool = True, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}; must be ≥ 1")
        if drop_last and len(split) < batch_size:
            raise ValueError(f"drop_last with {len(split)} samples < batch_size {batch_size} gives no batch")
        self.split = split.to(device)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.augment = None if augment is None or augment.identity else augment
        self.shuffle = shuffle
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        n = len(self.split)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x = self.split.x[idx].float().div_(255)
            if self.augment is not None:
                x = augment(x, self.augment, generator)
            yield x, self.split.y[idx], idx
