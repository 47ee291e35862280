"""Single-step adversarial training (UIAT §4.4 and Table 5): mean CE on one-gradient-step adversaries.

* `rs_fgsm` (Wong et al. 2020): δ⁰ ~ U(−ε, ε), one step of α = 1.25ε, projected back to the ε-ball.
* `nfgsm` (de Jorge et al. 2022): η ~ U(−kε, kε) with k = 2, one step of α = ε, *not* projected back
  (|δ| ≤ (k+1)·ε): the larger noise is what avoids catastrophic overfitting without a projection.
Both generate the adversary with the model in train mode, as their reference codes do (`bn_mode`).
Variants of the codes: RS-FGSM's `init=zero` (train_fgsm.py `--delta-init zero`: plain FGSM with step α; the
code's default and every table use the random start); N-FGSM's `clip_ratio` (train.py `--clip`: δ clipped to
[−clip·ε, clip·ε]; default −1 there = none, 0 here).
Step sizes are given as fractions of the per-sample ε (`alpha_ratio`). The learning-rate recipes (cyclic,
max 0.2, 30 epochs) belong to the run's config.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F

from bench.attacks.single_step import n_fgsm, rs_fgsm
from bench.hparams import require
from methods.core.base import Batch, Method, StepOutput
from methods.core.registry import METHODS
from methods.core.step_bound import attack, update


RS_FGSM_INITS = {"random": "uniform", "zero": "none"}  # hyperparameter → PGD engine init


@dataclass(frozen=True)
class RSFGSMHparams:
    alpha_ratio: float = 1.25  # α / ε
    init: Literal["random", "zero"] = "random"  # δ⁰ ~ U(−ε, ε) or δ⁰ = 0
    bn_mode: Literal["eval", "train"] = "train"

    def __post_init__(self):
        require(self, "alpha_ratio", self.alpha_ratio > 0, "a number > 0")


@METHODS.register("rs_fgsm")
class RSFGSM(Method):
    Hparams = RSFGSMHparams
    description = "RS-FGSM (Wong et al.): CE on FGSM adversaries from a uniform random start"
    per_class = frozenset({"eps"})  # its adversaries read class_eps (eps_for): CCM may recalibrate it

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return attack(1) + update(1)

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        eps = self.eps_for(batch.y)
        x_adv = rs_fgsm(model, batch.x, batch.y, eps, alpha=self.hp.alpha_ratio * eps, bn_mode=self.hp.bn_mode,
                        init=RS_FGSM_INITS[self.hp.init])
        logits = model(x_adv)
        return StepOutput(F.cross_entropy(logits, batch.y), logits)


@dataclass(frozen=True)
class NFGSMHparams:
    k: float = 2.0  # noise radius kε
    alpha_ratio: float = 1.0  # α / ε
    clip_ratio: float = 0.0  # > 0: clip δ to [−clip_ratio·ε, clip_ratio·ε] (the code's --clip); 0: no clipping
    bn_mode: Literal["eval", "train"] = "train"

    def __post_init__(self):
        require(self, "alpha_ratio", self.alpha_ratio > 0, "a number > 0")
        require(self, "k", self.k >= 0, "a number ≥ 0")
        require(self, "clip_ratio", self.clip_ratio >= 0, "a number ≥ 0 (0: no clipping)")


@METHODS.register("nfgsm")
class NFGSM(Method):
    Hparams = NFGSMHparams
    description = "N-FGSM (de Jorge et al.): CE on FGSM adversaries from 2ε-wide noise, no projection"
    per_class = frozenset({"eps"})  # its adversaries read class_eps (eps_for): CCM may recalibrate it

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return attack(1) + update(1)

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        eps = self.eps_for(batch.y)
        x_adv = n_fgsm(model, batch.x, batch.y, eps, k=self.hp.k, alpha=self.hp.alpha_ratio * eps,
                       clip=self.hp.clip_ratio, bn_mode=self.hp.bn_mode)
        logits = model(x_adv)
        return StepOutput(F.cross_entropy(logits, batch.y), logits)
