"""PGD adversarial training (Madry et al. 2018): mean CE on PGD-K examples, no clean term."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F

from methods.core.adversaries import ce_adversary
from methods.core.base import Batch, Method, StepOutput
from methods.core.registry import METHODS
from methods.core.step_bound import attack, update


@dataclass(frozen=True)
class PGDATHparams:
    init: Literal["uniform", "normal", "none"] = "uniform"  # Madry/GAIRAT/CFA: uniform in the ball
    bn_mode: Literal["eval", "train"] = "eval"  # CFA's code attacks in train mode


@METHODS.register("pgd_at")
class PGDAT(Method):
    Hparams = PGDATHparams
    description = "PGD adversarial training (Madry et al.): CE on PGD-K adversaries"
    per_class = frozenset({"eps"})  # its adversaries read class_eps (eps_for): CCM may recalibrate it
    norms = ("linf", "l2")

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return attack(self.ctx.attack_steps) + update(1)

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x_adv = ce_adversary(self, model, batch)
        logits = model(x_adv)
        return StepOutput(F.cross_entropy(logits, batch.y), logits)


METHODS.alias("at", "pgd_at")  # CFA's tables call it AT
