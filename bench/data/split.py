"""A labelled image set kept compact (uint8) until a batch is actually used."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class Split:
    """Images as uint8 N×C×H×W (¼ of the float memory, so whole sets fit on the GPU) and int64 labels."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise ValueError(f"Split.x must be uint8 N×C×H×W, got {self.x.dtype} of shape {tuple(self.x.shape)}")
        if self.y.dtype != torch.int64 or self.y.dim() != 1 or len(self.y) != len(self.x):
            raise ValueError(f"Split.y must be int64 of shape ({len(self.x)},), got {self.y.dtype} "
                             f"of shape {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return len(self.y)

    def float_images(self) -> torch.Tensor:
        """The images as float in [0,1]."""
        return self.x.float().div_(255)

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device), self.y.to(device))

    def subset(self, idx: torch.Tensor | Sequence[int]) -> "Split":
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.x.device)
        return Split(self.x[idx], self.y[idx])
