"""TRADES (Zhang et al. 2019): CE on clean + β·KL(p(x) ‖ p(x_adv)), KL attack.

The clean distribution in the outer KL is *not* detached (every TRADES-lineage code lets the gradient
flow through both arguments). `loss_scale="cfa"` reproduces CFA's reparameterised loss, which divides
the per-sample loss by 1+β (Zhang et al. 2019 [C]); the CFA tables' TRADES rows come from that code. β is kept
per class (`class_beta`) so that CFA's CCR can recalibrate it every epoch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from bench.attacks.losses import kl_per_sample
from bench.hparams import require
from methods.core.base import Batch, Method, StepOutput
from methods.core.registry import METHODS
from methods.core.adversaries import trades_adversary
from methods.core.step_bound import attack, forward, update


@dataclass(frozen=True)
class TRADESHparams:
    beta: float = 6.0  # 1/λ; FRL/CAAT and BiLAW's "TRADES(1/λ=1)" use 1
    init: Literal["uniform", "normal", "none"] = "normal"  # x + 0.001·N(0, I)
    bn_mode: Literal["eval", "train"] = "eval"
    loss_scale: Literal["standard", "cfa"] = "standard"

    def __post_init__(self):
        require(self, "beta", self.beta >= 0, "a number ≥ 0")


@METHODS.register("trades")
class TRADES(Method):
    Hparams = TRADESHparams
    description = "TRADES (Zhang et al.): clean CE + β·KL(p(x)‖p(x_adv)) with a KL attack"
    per_class = frozenset({"eps", "beta"})  # class_eps (eps_for) and class_beta: CCM / CCR recalibrate them

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return forward(1) + attack(self.ctx.attack_steps) + update(2)  # KL target, attack, clean + adversarial loss

    def __init__(self, hp, ctx):
        super().__init__(hp, ctx)
        # Per-class β: uniform here; CFA's CCR rewrites it every epoch.
        self.class_beta = torch.full((ctx.num_classes,), float(hp.beta), device=ctx.device)

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x_adv = trades_adversary(self, model, batch)
        logits_nat, logits_adv = model(batch.x), model(x_adv)
        ce = F.cross_entropy(logits_nat, batch.y, reduction="none")
        kl = kl_per_sample(logits_nat, logits_adv)
        beta = self.class_beta[batch.y]
        if self.hp.loss_scale == "cfa":
            loss = ((ce + beta * kl) / (1 + beta)).mean()
        else:
            loss = (ce + beta * kl).mean()
        return StepOutput(loss, logits_adv, {"ce": ce.mean().detach(), "kl": kl.mean().detach()})

    def state_dict(self):
        return {**super().state_dict(), "class_beta": self.class_beta.cpu()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.class_beta = state["class_beta"].to(self.ctx.device)
