"""Natural (plain) training: cross-entropy on clean, augmented images."""
from __future__ import annotations

import torch.nn.functional as F

from methods.core.base import Batch, Method, StepOutput
from methods.core.registry import METHODS
from methods.core.step_bound import update


@METHODS.register("natural")
class Natural(Method):
    description = "plain training on clean data (no adversary)"

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return update(1)
    norms = ("linf", "l2")  # no adversary: an ℓ2 run only changes its evaluation

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        logits = model(batch.x)
        return StepOutput(F.cross_entropy(logits, batch.y), logits)
