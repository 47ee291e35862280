"""EMA weight averaging (CFA's "+EMA" rows; CFA §5.1), as the add-on `+ema`.

Epoch-level: after epoch t, θ̄ ← d·θ̄ + (1−d)·θ_t over the whole state_dict (BN running statistics too;
the integer `num_batches_tracked` is averaged and truncated back to an integer, as the code's load_state_dict
copy into the integer buffer does (CFA utils.py weight_average: 141.56 → 141)); the first update copies θ_t.
No BN recalibration. Paper defaults d = 0.85 from "the 50-th epoch" (counted from 1: 0-based 49); the official
code uses d = 0.88 from its first epoch (`--hp ema.decay=0.88 --hp ema.start_epoch=1`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from bench.hparams import require
from methods.core.addon import ADDONS, Addon
from methods.core.reference_epoch import reference_epoch


@dataclass(frozen=True)
class EMAHparams:
    decay: float = 0.85
    start_epoch: int = 50  # counted from 1: the model after this epoch is copied, later epochs are averaged in

    def __post_init__(self):
        require(self, "decay", 0 <= self.decay < 1, "a number in [0, 1)")
        require(self, "start_epoch", self.start_epoch >= 1, "an epoch ≥ 1 (counted from 1)")


def average_into(avg: dict[str, torch.Tensor], new: dict[str, torch.Tensor], decay: float) -> None:
    """avg ← decay·avg + (1−decay)·new in place, integer buffers averaged in float and truncated back."""
    for key, value in new.items():
        mixed = decay * avg[key].double() + (1 - decay) * value.detach().double()
        avg[key].copy_(mixed.trunc() if not value.is_floating_point() else mixed)


class WeightAverage(Addon):
    """An averaged copy of the trained model, evaluated and checkpointed as `averaged_name`; EMA and FAWA
    differ only in which epochs they let in."""

    averaged_name = ""

    def __init__(self, hp, base):
        super().__init__(hp, base)
        self.model = self.ctx.new_model()
        self.started = False

    def absorb(self, model) -> None:
        """The first absorbed epoch is copied, later ones averaged in with weight 1 − decay."""
        with torch.no_grad():
            if self.started:
                average_into(self.model.state_dict(), model.state_dict(), self.hp.decay)
            else:
                self.model.load_state_dict(model.state_dict())
                self.started = True

    def averaged_models(self):
        return {self.averaged_name: self.model} if self.started else {}

    def state_dict(self):
        return {"started": self.started, "model": {k: v.cpu() for k, v in self.model.state_dict().items()}}

    def load_state_dict(self, state):
        self.started = state["started"]
        self.model.load_state_dict(state["model"])


@ADDONS.register("ema")
class EMA(WeightAverage):
    Hparams = EMAHparams
    description = "epoch-level exponential moving average of the weights (evaluated as 'ema')"
    averaged_name = "ema"

    def on_epoch_end(self, model, epoch, train_class_acc) -> dict[str, Any]:
        if reference_epoch(epoch, counts_from=1) < self.hp.start_epoch:
            return {}
        self.absorb(model)
        return {"averaged": True}
