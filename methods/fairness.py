"""FRL's class-wise fairness machinery (spec §4.10 steps 1–5), shared by FRL, Baseline ReWeight and CAAT.

Once per epoch the model is evaluated on a clean held-out split (natural and PGD-20 errors per class);
each class's violation of "no class is worse than average by more than τ" drives a Lagrange multiplier,
and the multipliers become class weights on the loss terms (ReWeight) or class-wise budgets (ReMargin).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.data import Split
from bench.evaluate import AttackSpec, EvalConfig, evaluate


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


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ w·v / Σ w, FRL's normalisation of class-weighted loss terms."""
    return (weights * values).sum() / weights.sum()
