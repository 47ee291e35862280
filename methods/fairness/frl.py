"""FRL, Fair Robust Learning (Xu et al. 2021, FRL): TRADES fine-tuning with class-wise weights
(ReWeight) and/or class-wise budgets (ReMargin) driven by per-class error constraints on a held-out set.

Before each epoch: per-class natural and boundary errors on the clean meta split (PGD-20); multipliers
λ⁰ ← N(λ⁰ + ρ₁γ⁰), λ¹ ← N(λ¹ + 2ρ₁γ¹), λ² ← λ² + ρ₂γ¹ (each variant updates only some of them); weights
w⁰ on CE and w¹ on KL; budget ε_c = ε·clip(exp(2λ²_c), 0.98, M); ρ₁ halved before the update of every 40th
epoch counted from 1, as the code (frlrw.py: `now_epoch % 40 == 0`), i.e. 0-based epochs 39, 79, ...
Loss: Σw⁰CE/Σw⁰ + β·Σw¹KL/Σw¹ ("separate"), or Σ(w⁰CE + βw¹KL)/Σ(w⁰+w¹) ("joint", the ReMargin code).

The three registered variants carry the official codes' defaults: `frl_rw` (ReWeight), `frl_rm` (ReMargin,
from the code's commit 18d1177), `frl_rwrm` (both; its code steps by max_i ε_i/4). FRL fine-tunes a robust
hot start whose recipe is undocumented [AMBIG]: the experiment supplies it; this file only defines the loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch.nn.functional as F

from bench.attacks import kl_per_sample, pgd
from bench.hparams import require
from methods.core.base import Batch, Method, StepOutput
from methods.fairness.constraints import FairConstraints, class_errors, weighted_mean
from methods.core.registry import METHODS
from methods.core.step_bound import attack, forward, update


@dataclass(frozen=True)
class FRLHparams:
    beta: float = 1.5  # TRADES 1/λ
    tau_nat: float = 0.1  # allowed excess of a class's natural error over the average
    tau_bdy: float = 0.1  # ... of its boundary error
    rho_weight: float = 0.05  # ρ₁, step of the weight multipliers
    rho_margin: float = 0.1  # ρ₂, step of the margin multiplier
    lim: float = 0.5  # cap on Σλ of the weight multipliers
    margin_max: float = 2.5  # M in clip(exp(2λ²), 0.98, M)
    rho_halve_every: int = 40
    val_attack_steps: int = 20
    step_rule: Literal["fixed", "quarter_max_eps"] = "fixed"
    loss_norm: Literal["separate", "joint"] = "separate"
    init: Literal["uniform", "normal", "none"] = "normal"
    bn_mode: Literal["eval", "train"] = "eval"

    def __post_init__(self):
        for name in ("rho_halve_every", "val_attack_steps"):
            require(self, name, getattr(self, name) >= 1, "an integer ≥ 1")
        require(self, "margin_max", self.margin_max >= 0.98, "a number ≥ 0.98 (the lower clip of the margin factor)")
        for name in ("beta", "tau_nat", "tau_bdy", "rho_weight", "rho_margin", "lim"):
            require(self, name, getattr(self, name) >= 0, "a number ≥ 0")


@dataclass(frozen=True)
class FRLReMarginHparams(FRLHparams):
    beta: float = 1.0
    lim: float = 0.3
    loss_norm: Literal["separate", "joint"] = "joint"


@dataclass(frozen=True)
class FRLBothHparams(FRLHparams):
    tau_nat: float = 0.07
    tau_bdy: float = 0.07
    rho_margin: float = 0.2
    margin_max: float = 3.0
    step_rule: Literal["fixed", "quarter_max_eps"] = "quarter_max_eps"


class FRL(Method):
    """Shared by the three variants; `updates` names the multipliers a variant moves."""

    heldout_kind = "frl_meta"
    updates: ClassVar[frozenset[str]] = frozenset()

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return forward(1) + attack(self.ctx.attack_steps) + update(2)  # as TRADES; class errors are per epoch

    def __init__(self, hp, ctx):
        super().__init__(hp, ctx)
        self.meta = ctx.heldout_split("meta", type(self).__name__)
        self.constraints = FairConstraints(
            ctx.num_classes, self.updates, tau_nat=hp.tau_nat, tau_bdy=hp.tau_bdy, rho_weight=hp.rho_weight,
            rho_margin=hp.rho_margin, lim=hp.lim, margin_max=hp.margin_max, halve_every=hp.rho_halve_every)
        self.last_errors: dict[str, list[float]] = {}
        self._apply()

    def _apply(self) -> None:
        self.w_ce = self.constraints.ce_weights().to(self.ctx.device)
        self.w_kl = self.constraints.kl_weights().to(self.ctx.device)
        self.class_eps = (self.ctx.eps * self.constraints.budget_factors()).to(self.ctx.device)

    def on_epoch_start(self, model, epoch):
        err = class_errors(model, self.meta, self.ctx.num_classes, self.ctx.eps, self.ctx.step_size,
                           self.hp.val_attack_steps, self.ctx.seed + epoch)
        self.constraints.step(epoch, err)
        self._apply()
        self.last_errors = {"nat": err.nat.tolist(), "bdy": err.bdy.tolist()}

    def on_epoch_end(self, model, epoch, train_class_acc):
        return {"val_errors": self.last_errors, "w_ce": self.w_ce.tolist(), "w_kl": self.w_kl.tolist(),
                "class_eps": self.class_eps.tolist()}

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        y = batch.y
        eps = self.eps_for(y)
        step = eps.max() / 4 if self.hp.step_rule == "quarter_max_eps" else self.ctx.step_size
        x_adv = pgd(model, batch.x, y, eps=eps, step_size=step, steps=self.ctx.attack_steps, init=self.hp.init,
                    loss="kl", bn_mode=self.hp.bn_mode)
        logits_nat, logits_adv = model(batch.x), model(x_adv)
        ce = F.cross_entropy(logits_nat, y, reduction="none")
        kl = kl_per_sample(logits_nat, logits_adv)
        w_ce, w_kl = self.w_ce[y], self.w_kl[y]
        if self.hp.loss_norm == "joint":
            loss = (w_ce * ce + self.hp.beta * w_kl * kl).sum() / (w_ce + w_kl).sum()
        else:
            loss = weighted_mean(ce, w_ce) + self.hp.beta * weighted_mean(kl, w_kl)
        return StepOutput(loss, logits_adv, {"ce": ce.mean().detach(), "kl": kl.mean().detach()})

    def state_dict(self):
        return {**super().state_dict(), "constraints": self.constraints.state_dict(), "last_errors": self.last_errors}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.constraints.load_state_dict(state["constraints"])
        self.last_errors = state["last_errors"]
        self._apply()


@METHODS.register("frl_rw")
class FRLReWeight(FRL):
    Hparams = FRLHparams
    description = "FRL ReWeight: TRADES with class weights from natural/boundary error constraints"
    updates = frozenset({"nat", "bdy"})


@METHODS.register("frl_rm")
class FRLReMargin(FRL):
    Hparams = FRLReMarginHparams
    description = "FRL ReMargin: TRADES with class-wise budgets from the boundary error constraint"
    updates = frozenset({"nat", "margin"})


@METHODS.register("frl_rwrm")
class FRLReWeightReMargin(FRL):
    Hparams = FRLBothHparams
    description = "FRL ReWeight+ReMargin: class weights and class-wise budgets"
    updates = frozenset({"nat", "bdy", "margin"})
