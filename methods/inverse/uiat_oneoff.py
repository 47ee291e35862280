"""UIAT one-off (Dong et al. 2023, App. B.2; Dong et al. 2023, UIAT §3): inverse adversaries are made in one epoch only.

L = mean CE(f(x̂), y) + λ·KL(p_target ‖ p(x̂)) with x̂ the PGD adversary and (Eq. 10)
  p_target = p(x)   before epoch T′ (MART-like; gradient through p(x) by default, `clean_target_grad` [AMBIG]),
           = p(x̃)   during epoch T′, the universal z updated once per batch from its initialisation [AMBIG] and
                     each sample's p(x̃) stored,
           = stored p(x̃) after T′.
T′ = `start_fraction`·epochs counted from 1 (HAT's code, which UIAT builds on): 80 of 100 is 0-based epoch 79.
No momentum. Inverse adversaries, radii and steps as in `uiat` (see methods/inverse/uiat.py), β = 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F

from bench.hparams import require
from methods.core.base import Batch, StepOutput
from methods.core.registry import METHODS
from methods.core.step_bound import attack, update
from methods.inverse.uiat import InverseAdversarialTraining, InverseATHparams
from methods.inverse.universal_inverse import OneOffTarget


@dataclass(frozen=True)
class UIATOneOffHparams(InverseATHparams):
    start_fraction: float = 0.8  # T′ / epochs
    clean_target_grad: bool = True  # gradient through p(x) before T′

    def __post_init__(self):
        super().__post_init__()
        require(self, "start_fraction", 0 <= self.start_fraction <= 1, "a fraction of training in [0, 1]")


@METHODS.register("uiat_oneoff")
class UIATOneOff(InverseAdversarialTraining):
    Hparams = UIATOneOffHparams
    description = "UIAT one-off (Dong et al.): clean-target KL before T', universal inverse-adversary targets from T'"

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return attack(self.ctx.attack_steps) + update(1) + self.target.bound(epoch, self.inverse_bound())

    def __init__(self, hp: UIATOneOffHparams, ctx):
        super().__init__(hp, ctx)
        self.target = OneOffTarget(ctx, hp.start_fraction, hp.clean_target_grad)

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x_adv = self.adversary(model, batch)
        logits_adv = model(x_adv)
        kl = self.target.kl(model, batch.x, batch.idx, batch.epoch, logits_adv,
                            lambda: self.inverse.probs(model, batch.x, batch.y, x_adv))
        ce = F.cross_entropy(logits_adv, batch.y)
        return StepOutput(ce + self.hp.lam * kl, logits_adv, {"ce": ce.detach(), "kl": kl.detach()})

    def on_epoch_end(self, model, epoch, train_class_acc) -> dict[str, Any]:
        self.target.on_epoch_end(epoch)
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "target": self.target.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.target.load_state_dict(state["target"])
