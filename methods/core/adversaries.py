"""The two training adversaries most methods share, built from a method's budgets and hyperparameters.

Both use the method's per-sample budgets (`eps_for`, so CCM/FRL budgets apply), the run's norm, step and step
count, and the method's `init` and `bn_mode` hyperparameters:
* `ce_adversary`: PGD-K ascent on CE (Madry; PGD-AT, MAIL-AT, GAIRAT-style bases, UIAT's x̂, ...);
* `trades_adversary`: PGD-K ascent on KL(p(x) ‖ p(u)), p(x) computed once (TRADES, HAT, MAIL-TRADES; Zhang et al. 2019).
"""
from __future__ import annotations

import torch
from torch import nn

from bench.attacks import pgd
from methods.core.base import Batch, Method


def ce_adversary(method: Method, model: nn.Module, batch: Batch) -> torch.Tensor:
    return pgd(model, batch.x, batch.y, eps=method.eps_for(batch.y), step_size=method.ctx.step_size,
               steps=method.ctx.attack_steps, norm=method.ctx.norm, init=method.hp.init, bn_mode=method.hp.bn_mode)


def trades_adversary(method: Method, model: nn.Module, batch: Batch) -> torch.Tensor:
    return pgd(model, batch.x, batch.y, eps=method.eps_for(batch.y), step_size=method.ctx.step_size,
               steps=method.ctx.attack_steps, norm=method.ctx.norm, init=method.hp.init, loss="kl",
               bn_mode=method.hp.bn_mode)
