"""GAIRAT (Zhang et al. 2021): PGD-AT whose per-sample CE is weighted by the sample's geometry.

κ_i counts the PGD iterates u⁰..u^{K−1} that are still classified correctly, checked before each step — the
official code's count; the paper's "least number of steps to misclassify" differs when an iterate flips back
[P≠C]. Samples that fall quickly (small κ, close to the boundary) get large weights (Tanh function):
w_i = ½(1 + tanh(Λ + 5·(1 − κ_i/⌊K/2⌋))), normalised to batch mean 1; the loss is mean_i w_i·CE(f(x_i^adv), y_i).

Λ follows the official "fixed" schedule merged with its begin epoch: Λ = +∞ (uniform weights, i.e. plain
PGD-AT) before `begin` of training, Λ = `lam` after. `begin` = 0.5 is epoch 60 of the official 120 and epoch
50 of BiLAW's 100 [AMBIG]. (The code's "piecewise" schedule is a [CODE-BUG] equal to "fixed"; "linear" and the
Sigmoid/Discrete weight functions are not implemented.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.attacks import pgd
from bench.attacks.losses import ce_loss
from methods.base import Batch, Method, StepOutput
from methods.epoch_fraction import check_fraction, reached
from methods.registry import METHODS
from methods.sample_weights import mean_one


@dataclass(frozen=True)
class GAIRATHparams:
    lam: float = -1.0  # Λ once the weighting has begun
    begin: float = 0.5  # fraction of training after which the weights apply (uniform before)
    init: Literal["uniform", "normal", "none"] = "uniform"
    bn_mode: Literal["eval", "train"] = "eval"


def pgd_counting_correct(model: nn.Module, x: Tensor, y: Tensor, **pgd_args) -> tuple[Tensor, Tensor]:
    """(CE-PGD adversaries, κ): κ_i = how many of the iterates the engine took a step from were classified correctly.

    The engine evaluates its loss exactly once per step, on the current iterate, so the loss can count.
    """
    kappa = torch.zeros(len(y), device=x.device)

    def ce_counting_correct(logits: Tensor, target: Tensor) -> Tensor:
        kappa.add_((logits.detach().argmax(1) == target).float())
        return ce_loss(logits, target)

    return pgd(model, x, y, loss=ce_counting_correct, **pgd_args), kappa


def geometry_weights(kappa: Tensor, steps: int, lam: float) -> Tensor:
    """GAIRAT's Tanh weights of κ for K = `steps` (⌊K/2⌋ as in the code), normalised to batch mean 1."""
    half = steps // 2
    return mean_one(0.5 * (1 + torch.tanh(lam + 5 * (1 - kappa / half))))


@METHODS.register("gairat")
class GAIRAT(Method):
    Hparams = GAIRATHparams
    description = "GAIRAT (Zhang et al.): PGD-AT reweighted by how many PGD steps each sample survives"
    norms = ("linf", "l2")

    def __init__(self, hp, ctx):
        super().__init__(hp, ctx)
        check_fraction("gairat.begin", hp.begin)
        if ctx.attack_steps < 2:
            raise ValueError(f"GAIRAT needs attack_steps >= 2 (its weights divide by ⌊K/2⌋); got {ctx.attack_steps}")

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x_adv, kappa = pgd_counting_correct(
            model, batch.x, batch.y, eps=self.eps_for(batch.y), step_size=self.ctx.step_size,
            steps=self.ctx.attack_steps, norm=self.ctx.norm, init=self.hp.init, bn_mode=self.hp.bn_mode)
        logits = model(x_adv)
        ce = F.cross_entropy(logits, batch.y, reduction="none")
        if reached(batch.epoch, self.hp.begin, self.ctx.epochs):
            weights = geometry_weights(kappa, self.ctx.attack_steps, self.hp.lam)
        else:
            weights = torch.ones_like(ce)
        return StepOutput((weights * ce).mean(), logits, {"kappa": kappa.mean()})
