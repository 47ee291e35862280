"""What BiLAW's runs record about their sample weights each epoch, for the paper's weight figures (Fig. 3, 5, 6).

* `weight_quantiles`: per class, quantiles of the weight the loss gave each training sample during the epoch,
  relative to uniform (n·w_i in a batch of n, so 1 = uniform) — the per-class weight distributions.
* `weight_tracked` (learned variants): ω_μ's raw prediction (the sigmoid output, before the per-batch
  normalisation) for a fixed subset of training samples — the first `TRACKED` of the training split, whose
  dataset order mixes the classes — on the clean image and on its training adversary, both taken at the end
  of the epoch in eval mode — the weight dynamics of Fig. 5.

Both stay small whatever the data: C × len(QUANTILES) + 2 × TRACKED numbers per epoch. Logging never syncs
the host inside the training step (samples land in preallocated buffers by position).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
TRACKED = 32
SIGNIFICANT = 6  # digits kept in the record: early weights differ from uniform by ~1e-4


def _short(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT}g}")


def _rounded(values: Tensor, seen: Tensor) -> list[float | None]:
    return [_short(v) if s else None for v, s in zip(values.tolist(), seen.tolist())]


class EpochWeights:
    """The weight each training sample got in the current epoch (by position), summarised per class."""

    def __init__(self, train_size: int, num_classes: int, device: torch.device):
        self.num_classes = num_classes
        self.relative = torch.zeros(train_size, device=device)
        self.labels = torch.full((train_size,), -1, dtype=torch.long, device=device)

    def reset(self) -> None:
        self.labels.fill_(-1)

    def add(self, idx: Tensor, y: Tensor, w: Tensor) -> None:
        """The batch's weights (summing to 1 over the batch), stored relative to uniform."""
        self.relative[idx] = w.detach().float() * len(w)
        self.labels[idx] = y

    def summary(self) -> dict[str, Any]:
        quantiles = torch.tensor(QUANTILES, device=self.relative.device)
        per_class = []
        for c in range(self.num_classes):
            values = self.relative[self.labels == c]
            per_class.append([_short(q) for q in torch.quantile(values, quantiles).tolist()]
                             if len(values) else None)
        return {"weight_quantiles": {"q": list(QUANTILES), "per_class": per_class}}


class TrackedSamples:
    """The last-seen (augmented) image of each of the first `count` training samples."""

    def __init__(self, train_size: int):
        self.count = min(TRACKED, train_size)
        self.x: Tensor | None = None  # count + 1 rows: the last one absorbs every untracked sample
        self.y: Tensor | None = None
        self.seen: Tensor | None = None

    def store(self, idx: Tensor, x: Tensor, y: Tensor) -> None:
        if self.x is None:
            self.x = x.new_zeros((self.count + 1, *x.shape[1:]))
            self.y = y.new_zeros(self.count + 1)
            self.seen = torch.zeros(self.count + 1, dtype=torch.bool, device=x.device)
        slot = idx.clamp(max=self.count)
        self.x[slot] = x.detach()
        self.y[slot] = y
        self.seen[slot] = True

    def samples(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """(images, labels, seen mask) of the tracked samples, or None before the first batch."""
        if self.x is None:
            return None
        return self.x[:self.count], self.y[:self.count], self.seen[:self.count]

    @staticmethod
    def record(clean: Tensor, adv: Tensor, seen: Tensor) -> dict[str, Any]:
        return {"weight_tracked": {"idx": list(range(len(seen))), "clean": _rounded(clean, seen),
                                   "adv": _rounded(adv, seen)}}
