"""Batches drawn from a clean held-out split (CAAT's meta set, BiLAW's validation set #1).

Meta-learning methods need one held-out batch per training step, independent of the training stream.
The sampler walks a fresh random permutation of the split (reshuffled when exhausted) with its own
generator, and its position and generator state travel in the method's state, so a resumed run draws
exactly the batches the uninterrupted run would have.
"""
from __future__ import annotations

from typing import Any

import torch

from bench.data import Split


class HeldoutBatches:
    def __init__(self, split: Split, batch_size: int, seed: int = 0):
        if len(split) == 0:
            raise ValueError("the held-out split is empty")
        self.split = split
        self.batch_size = min(batch_size, len(split))
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(split), generator=self.generator)
        self.position = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(float images in [0,1], labels) of the next batch, on the split's device."""
        if self.position + self.batch_size > len(self.order):
            self.order = torch.randperm(len(self.split), generator=self.generator)
            self.position = 0
        idx = self.order[self.position:self.position + self.batch_size].to(self.split.x.device)
        self.position += self.batch_size
        return self.split.x[idx].float().div_(255), self.split.y[idx]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = state["order"], state["position"]
