"""FRL's class-wise fairness machinery (Xu et al. 2021, FRL Alg. 1), shared by FRL, Baseline ReWeight and CAAT.

Once per epoch the model is evaluated on a clean held-out split (natural and PGD-20 errors per class);
each class's violation of "no class is worse than average by more than τ" drives a Lagrange multiplier,
and the multipliers become class weights on the loss terms (ReWeight) or class-wise budgets (ReMargin).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.data import Split
from bench.evaluate import AttackSpec, EvalConfig, evaluate
from methods.core.reference_epoch import reference_epoch


@dataclass(frozen=True)
class ClassErrors:
    """Per-class natural / boundary / robust errors (tensors of shape (C,)) and their averages."""

    nat: torch.Tensor
    bdy: torch.Tensor
    rob: torch.Tensor
    avg_nat: float
    avg_bdy: float
    avg_rob: float


def class_errors(model: nn.Module, split: Split, num_classes: int, eps: float, step: float, steps: int,
                 seed: int) -> ClassErrors:
    """Errors of `model` (eval mode) on `split` under clean inputs and a PGD-`steps` CE attack."""
    attacks = (AttackSpec("clean", "clean", init="none"),
               AttackSpec("pgd20", "pgd", eps=eps, steps=steps, step_size=step, init="uniform"))
    triple = evaluate(model, split, num_classes, EvalConfig(attacks, seed=seed), split.x.device)["error_triple"]

    def per_class(part: str) -> torch.Tensor:  # absent classes (None) violate nothing: use the average
        return torch.tensor([triple[part]["avg"] if v is None else v for v in triple[part]["per_class"]])

    return ClassErrors(per_class("nat"), per_class("bdy"), per_class("rob"),
                       triple["nat"]["avg"], triple["bdy"]["avg"], triple["rob"]["avg"])


def violation(per_class: torch.Tensor, average: float, tau: float) -> torch.Tensor:
    """γ_c = R(c) − R − τ: positive where class c is worse than average by more than τ."""
    return per_class - average - tau


def project(multiplier: torch.Tensor, lim: float) -> torch.Tensor:
    """N(v): clip to v ≥ 0, then rescale so that Σv ≤ lim."""
    v = multiplier.clamp_min(0)
    total = float(v.sum())
    return v * (lim / total) if total > lim else v


def class_weights(multiplier: torch.Tensor) -> torch.Tensor:
    """w_c = 1/C + λ_c − (1/C)Σλ: uniform at λ = 0, mass moved towards violating classes."""
    return 1.0 / len(multiplier) + multiplier - multiplier.mean()


def margin_factors(multiplier: torch.Tensor, max_factor: float) -> torch.Tensor:
    """ReMargin's budget factor m_c = clip(exp(2λ²_c), 0.98, M)."""
    return torch.exp(2 * multiplier).clamp(0.98, max_factor)


def halves_rho(epoch: int, every: int) -> bool:
    """Whether ρ is halved before 0-based `epoch`'s update: FRL's code (frlrw.py) loops `now_epoch` from 1 and
    halves when `now_epoch % 40 == 0`, i.e. in the last epoch of every 40 (0-based 39, 79, ...)."""
    return reference_epoch(epoch, counts_from=1) % every == 0


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ w·v / Σ w, FRL's normalisation of class-weighted loss terms."""
    return (weights * values).sum() / weights.sum()


class FairConstraints:
    """FRL's multipliers λ⁰ (natural error → CE weights), λ¹ (boundary error → KL weights) and λ² (boundary
    error → budget factors); `updates` names the ones a variant moves. ρ₁ is halved before the update of every
    `halve_every`-th epoch counted from 1 (`halves_rho`)."""

    def __init__(self, num_classes: int, updates: frozenset[str], *, tau_nat: float, tau_bdy: float,
                 rho_weight: float, rho_margin: float, lim: float, margin_max: float, halve_every: int):
        if halve_every < 1 or margin_max < 0.98:
            raise ValueError(f"need rho_halve_every ≥ 1 and margin_max ≥ 0.98; got {halve_every}, {margin_max}")
        self.updates = updates
        self.tau_nat, self.tau_bdy, self.rho_margin = tau_nat, tau_bdy, rho_margin
        self.lim, self.margin_max, self.halve_every = lim, margin_max, halve_every
        self.rho = rho_weight
        self.lam_nat, self.lam_bdy, self.lam_margin = (torch.zeros(num_classes) for _ in range(3))

    def step(self, epoch: int, err: ClassErrors) -> None:
        if halves_rho(epoch, self.halve_every):
            self.rho /= 2
        g_nat = violation(err.nat, err.avg_nat, self.tau_nat)
        g_bdy = violation(err.bdy, err.avg_bdy, self.tau_bdy)
        if "nat" in self.updates:
            self.lam_nat = project(self.lam_nat + self.rho * g_nat, self.lim)
        if "bdy" in self.updates:
            self.lam_bdy = project(self.lam_bdy + 2 * self.rho * g_bdy, self.lim)
        if "margin" in self.updates:
            self.lam_margin = self.lam_margin + self.rho_margin * g_bdy

    def ce_weights(self) -> torch.Tensor:
        return class_weights(self.lam_nat)

    def kl_weights(self) -> torch.Tensor:
        return class_weights(self.lam_bdy)

    def budget_factors(self) -> torch.Tensor:
        return margin_factors(self.lam_margin, self.margin_max)

    def state_dict(self) -> dict[str, Any]:
        return {"rho": self.rho, "lam_nat": self.lam_nat, "lam_bdy": self.lam_bdy, "lam_margin": self.lam_margin}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rho = state["rho"]
        self.lam_nat, self.lam_bdy, self.lam_margin = state["lam_nat"], state["lam_bdy"], state["lam_margin"]
