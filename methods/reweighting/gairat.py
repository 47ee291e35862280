"""GAIRAT (Zhang et al. 2021): PGD-AT whose per-sample CE is weighted by the sample's geometry.

κ_i counts the PGD iterates u⁰..u^{K−1} that are still classified correctly, checked before each step — the
official code's count; the paper's "least number of steps to misclassify" differs when an iterate flips back
[P≠C]. Samples that fall quickly (small κ, close to the boundary) get large weights; `weight_fn` picks one of
the code's three functions (GAIR.py; the paper's appendix compares them), each normalised to batch mean 1:
  tanh (default)  ½(1 + tanh(Λ + 5·(1 − κ_i/⌊K/2⌋)))
  sigmoid         sigmoid(Λ + 5·(1 − κ_i/⌊K/2⌋))
  discrete        (K + 1 − κ_i)/(K + 1)   (no Λ)
The loss is mean_i w_i·CE(f(x_i^adv), y_i).

Λ follows the official "fixed" schedule merged with its begin epoch: Λ = +∞ (uniform weights, i.e. plain
PGD-AT) before `begin` of training, Λ = `lam` after. The code counts from 1 (GAIRAT.py: the weights apply when
`(epoch + 1) >= begin_epoch`, Λ = `adjust_Lambda(epoch + 1)`), so `begin` = 0.5 first weights 0-based epoch 59
of the official 120 (and 49 of BiLAW's 100 [AMBIG]). (The code's "piecewise" schedule is a [CODE-BUG] equal to
"fixed"; its "linear" schedule is not used by any table and not implemented.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.attacks import pgd
from bench.attacks.losses import ce_loss
from bench.hparams import require
from methods.core.base import Batch, Method, StepOutput, Warmup
from methods.core.reference_epoch import at_least, first_epoch
from methods.core.registry import METHODS
from methods.core.sample_weights import mean_one
from methods.core.step_bound import attack, update


@dataclass(frozen=True)
class GAIRATHparams:
    lam: float = -1.0  # Λ once the weighting has begun
    begin: float = 0.5  # fraction of training after which the weights apply (uniform before)
    weight_fn: Literal["tanh", "sigmoid", "discrete"] = "tanh"
    init: Literal["uniform", "normal", "none"] = "uniform"
    bn_mode: Literal["eval", "train"] = "eval"

    def __post_init__(self):
        require(self, "begin", 0 <= self.begin <= 1, "a fraction of training in [0, 1]")


def pgd_counting_correct(model: nn.Module, x: Tensor, y: Tensor, **pgd_args) -> tuple[Tensor, Tensor]:
    """(CE-PGD adversaries, κ): κ_i = how many of the iterates the engine took a step from were classified correctly.

    The engine evaluates its loss exactly once per step, on the current iterate, so the loss can count.
    """
    kappa = torch.zeros(len(y), device=x.device)

    def ce_counting_correct(logits: Tensor, target: Tensor) -> Tensor:
        kappa.add_((logits.detach().argmax(1) == target).float())
        return ce_loss(logits, target)

    return pgd(model, x, y, loss=ce_counting_correct, **pgd_args), kappa


WEIGHT_FUNCTIONS = {
    "tanh": lambda kappa, steps, lam: 0.5 * (1 + torch.tanh(lam + 5 * (1 - kappa / (steps // 2)))),
    "sigmoid": lambda kappa, steps, lam: torch.sigmoid(lam + 5 * (1 - kappa / (steps // 2))),
    "discrete": lambda kappa, steps, lam: (steps + 1 - kappa) / (steps + 1),
}


def geometry_weights(kappa: Tensor, steps: int, lam: float, weight_fn: str = "tanh") -> Tensor:
    """GAIRAT's weights of κ for K = `steps` (⌊K/2⌋ as in the code), normalised to batch mean 1."""
    if weight_fn not in WEIGHT_FUNCTIONS:
        raise ValueError(f"weight_fn={weight_fn!r}; choose one of {sorted(WEIGHT_FUNCTIONS)}")
    return mean_one(WEIGHT_FUNCTIONS[weight_fn](kappa, steps, lam))


@METHODS.register("gairat")
class GAIRAT(Method):
    Hparams = GAIRATHparams
    description = "GAIRAT (Zhang et al.): PGD-AT reweighted by how many PGD steps each sample survives"
    per_class = frozenset({"eps"})  # its adversaries read class_eps (eps_for): CCM may recalibrate it

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return attack(self.ctx.attack_steps) + update(1)
    norms = ("linf", "l2")

    def __init__(self, hp, ctx):
        super().__init__(hp, ctx)
        if ctx.attack_steps < 2:
            raise ValueError(f"GAIRAT needs attack_steps >= 2 (its weights divide by ⌊K/2⌋); got {ctx.attack_steps}")

    @classmethod
    def warmup(cls, hp: GAIRATHparams, epochs: int) -> Warmup:
        """Uniform weights until the code's 1-based counter reaches `begin`·epochs: plain PGD-AT with GAIRAT's attack."""
        first = first_epoch(lambda epoch: at_least(epoch, hp.begin, epochs, counts_from=1), epochs)
        return Warmup(first, "PGD-AT (GAIRAT's weights uniform)")

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x_adv, kappa = pgd_counting_correct(
            model, batch.x, batch.y, eps=self.eps_for(batch.y), step_size=self.ctx.step_size,
            steps=self.ctx.attack_steps, norm=self.ctx.norm, init=self.hp.init, bn_mode=self.hp.bn_mode)
        logits = model(x_adv)
        ce = F.cross_entropy(logits, batch.y, reduction="none")
        if self.weighted(batch.epoch):
            weights = geometry_weights(kappa, self.ctx.attack_steps, self.hp.lam, self.hp.weight_fn)
        else:
            weights = torch.ones_like(ce)
        return StepOutput((weights * ce).mean(), logits, {"kappa": kappa.mean()})
