"""MART (Wang et al. 2020): boosted CE on adversaries + β·KL weighted by 1 − p_y(x).

With P̂ = p(x_adv), P = p(x) and ỹ the most likely wrong class under P̂:
L = mean[CE(x_adv, y) − log(1.0001 − P̂_ỹ + 1e-12)] + β·mean[KL(P ‖ P̂)·(1.0000001 − P_y)].
The constants are the official code's; nothing is detached.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from bench.attacks import pgd
from bench.attacks.losses import loss_dtype
from bench.hparams import require
from methods.core.base import Batch, Method, StepOutput
from methods.core.registry import METHODS
from methods.core.step_bound import attack, update


@dataclass(frozen=True)
class MARTHparams:
    beta: float = 6.0  # official WRN-34-10 value; 5 for its ResNet-18 recipe (Wang et al. 2020)
    init: Literal["uniform", "normal", "none"] = "normal"
    bn_mode: Literal["eval", "train"] = "eval"

    def __post_init__(self):
        require(self, "beta", self.beta >= 0, "a number ≥ 0")


@METHODS.register("mart")
class MART(Method):
    Hparams = MARTHparams
    description = "MART (Wang et al.): misclassification-aware boosted CE + weighted KL"
    per_class = frozenset({"eps"})  # its adversaries read class_eps (eps_for): CCM may recalibrate it

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return attack(self.ctx.attack_steps) + update(2)  # CE attack, clean + adversarial loss

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        y = batch.y
        x_adv = pgd(model, batch.x, y, eps=self.eps_for(y), step_size=self.ctx.step_size,
                    steps=self.ctx.attack_steps, init=self.hp.init, bn_mode=self.hp.bn_mode)
        logits_nat, logits_adv = model(batch.x), model(x_adv)
        p_adv, p_nat = loss_dtype(logits_adv).softmax(1), loss_dtype(logits_nat).softmax(1)
        wrong = p_adv.scatter(1, y[:, None], float("-inf")).argmax(1)  # ỹ = argmax_{j≠y} P̂_j
        boost = -torch.log(1.0001 - p_adv.gather(1, wrong[:, None]).squeeze(1) + 1e-12)
        bce = F.cross_entropy(logits_adv, y, reduction="none") + boost
        kl = (torch.xlogy(p_nat, p_nat) - p_nat * torch.log(p_adv + 1e-12)).sum(1)
        weight = 1.0000001 - p_nat.gather(1, y[:, None]).squeeze(1)
        loss = bce.mean() + self.hp.beta * (kl * weight).mean()
        return StepOutput(loss, logits_adv, {"bce": bce.mean().detach(), "kl": kl.mean().detach()})
