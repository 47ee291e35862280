"""CAAT/FRL's "Baseline ReWeight" (Agarwal et al. 2018 reductions, as used in FRL's Table 1; Xu et al. 2021, FRL).

No public code exists [AMBIG]; the bench's default: PGD-AT whose adversarial CE is class-weighted by one
FRL-style multiplier driven by the robust-error constraint γ_c = R_rob(c) − R_rob − τ on the clean meta
split (PGD-20), λ ← N(λ + ργ), w_c = 1/C + λ_c − mean λ; L = Σw_{y_i}CE_i/Σw_{y_i}; ε fixed. ρ is halved as
FRL's code halves its ρ₁ (before the update of every `rho_halve_every`-th epoch counted from 1: 0-based 39, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from bench.hparams import require
from methods.core.adversaries import ce_adversary
from methods.core.base import Batch, Method, StepOutput
from methods.fairness.constraints import class_errors, class_weights, halves_rho, project, violation, weighted_mean
from methods.core.registry import METHODS
from methods.core.step_bound import attack, update


@dataclass(frozen=True)
class ReweightHparams:
    tau: float = 0.1
    rho: float = 0.05
    lim: float = 0.5
    rho_halve_every: int = 40
    val_attack_steps: int = 20
    init: Literal["uniform", "normal", "none"] = "uniform"
    bn_mode: Literal["eval", "train"] = "eval"

    def __post_init__(self):
        for name in ("rho_halve_every", "val_attack_steps"):
            require(self, name, getattr(self, name) >= 1, "an integer ≥ 1")
        for name in ("tau", "rho", "lim"):
            require(self, name, getattr(self, name) >= 0, "a number ≥ 0")


@METHODS.register("baseline_reweight")
class BaselineReweight(Method):
    Hparams = ReweightHparams
    description = "Baseline ReWeight: PGD-AT with class weights from a robust-error constraint (FRL/CAAT T1)"
    per_class = frozenset({"eps"})  # its adversaries read class_eps (eps_for): CCM may recalibrate it

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return attack(self.ctx.attack_steps) + update(1)
    heldout_kind = "frl_meta"

    def __init__(self, hp, ctx):
        super().__init__(hp, ctx)
        self.meta = ctx.heldout_split("meta", "baseline_reweight")
        self.rho = hp.rho
        self.lam = torch.zeros(ctx.num_classes)
        self.weights = class_weights(self.lam).to(ctx.device)

    def on_epoch_start(self, model, epoch):
        err = class_errors(model, self.meta, self.ctx.num_classes, self.ctx.eps, self.ctx.step_size,
                           self.hp.val_attack_steps, self.ctx.seed + epoch)
        if halves_rho(epoch, self.hp.rho_halve_every):
            self.rho /= 2
        self.lam = project(self.lam + self.rho * violation(err.rob, err.avg_rob, self.hp.tau), self.hp.lim)
        self.weights = class_weights(self.lam).to(self.ctx.device)

    def on_epoch_end(self, model, epoch, train_class_acc):
        return {"class_weights": self.weights.tolist()}

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x_adv = ce_adversary(self, model, batch)
        logits = model(x_adv)
        ce = F.cross_entropy(logits, batch.y, reduction="none")
        return StepOutput(weighted_mean(ce, self.weights[batch.y]), logits)

    def state_dict(self):
        return {**super().state_dict(), "lam": self.lam, "weights": self.weights.cpu(), "rho": self.rho}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.lam, self.weights = state["lam"], state["weights"].to(self.ctx.device)
        self.rho = state.get("rho", self.hp.rho)  # checkpoints from before ρ was halved hold no "rho"
