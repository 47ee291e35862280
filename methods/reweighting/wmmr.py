"""WMMR (Zeng et al. 2021, weighted minimax risk; a BiLAW Table 1 baseline): CE weighted by exp(−α·margin).

m_i = p_y(x_i^adv) − max_{j≠y} p_j(x_i^adv) is the softmax margin; L = mean_i exp(−α·m_i)·CE(f(x_i^adv), y_i).
As in the code [C], the weights are neither normalised nor detached: the gradient also flows through m, pushing
margins up. The adversary (BN in train mode, as in the code) ascends the same weighted objective with m taken on
the current iterate, so its input gradient has the extra term CE·∇exp(−α·m) — `attack_loss="ce"` drops it
(plain CE-PGD, close for α = 0.1) [AMBIG: the spec's default keeps the exact objective]. α = 0.1 is BiLAW's
α_train; WMMR's α_test only concerns its own evaluation. As in the code, PGD starts from x + U(−ε, ε) without
clipping to [0,1] (`init="uniform_unclipped"`; the first projection clips); `init=uniform` clips the start.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.attacks import pgd
from bench.attacks.losses import loss_dtype
from bench.hparams import require
from methods.core.base import Batch, Method, StepOutput
from methods.core.registry import METHODS
from methods.core.step_bound import attack, update


@dataclass(frozen=True)
class WMMRHparams:
    alpha: float = 0.1
    attack_loss: Literal["weighted_ce", "ce"] = "weighted_ce"
    init: Literal["uniform_unclipped", "uniform", "normal", "none"] = "uniform_unclipped"
    bn_mode: Literal["eval", "train"] = "train"

    def __post_init__(self):
        require(self, "alpha", self.alpha >= 0, "a number ≥ 0")


def softmax_margin(logits: Tensor, y: Tensor) -> Tensor:
    """p_y − max_{j≠y} p_j per sample, differentiable."""
    p = loss_dtype(logits).softmax(1)
    true = p.gather(1, y[:, None]).squeeze(1)
    return true - p.scatter(1, y[:, None], float("-inf")).amax(1)


def margin_weighted_ce(logits: Tensor, y: Tensor, alpha: float) -> Tensor:
    """exp(−α·m)·CE per sample, with the gradient through both factors."""
    return torch.exp(-alpha * softmax_margin(logits, y)) * F.cross_entropy(loss_dtype(logits), y, reduction="none")


@METHODS.register("wmmr")
class WMMR(Method):
    Hparams = WMMRHparams
    description = "WMMR (Zeng et al.): adversarial CE weighted by exp(−α·softmax margin), weights not detached"
    per_class = frozenset({"eps"})  # its adversaries read class_eps (eps_for): CCM may recalibrate it

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return attack(self.ctx.attack_steps) + update(1)
    norms = ("linf", "l2")

    def attack_objective(self, logits: Tensor, y: Tensor) -> Tensor:
        return margin_weighted_ce(logits, y, self.hp.alpha).mean()

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x_adv = pgd(model, batch.x, batch.y, eps=self.eps_for(batch.y), step_size=self.ctx.step_size,
                    steps=self.ctx.attack_steps, norm=self.ctx.norm, init=self.hp.init, bn_mode=self.hp.bn_mode,
                    loss=self.attack_objective if self.hp.attack_loss == "weighted_ce" else "ce")
        logits = model(x_adv)
        loss = margin_weighted_ce(logits, batch.y, self.hp.alpha).mean()
        return StepOutput(loss, logits, {"margin": softmax_margin(logits, batch.y).mean().detach()})
