"""The TRADES adversary, shared by the TRADES-based methods (HAT, MAIL-TRADES; spec §4.3).

PGD-K ascent on KL(p(x) ‖ p(u)) with p(x) computed once before the loop, at the method's per-sample
budgets, step and steps, with the method's `init` and `bn_mode` hyperparameters.
"""
from __future__ import annotations

import torch
from torch import nn

from bench.attacks import pgd
from methods.base import Batch, Method


def trades_adversary(method: Method, model: nn.Module, batch: Batch) -> torch.Tensor:
    return pgd(model, batch.x, batch.y, eps=method.eps_for(batch.y), step_size=method.ctx.step_size,
               steps=method.ctx.attack_steps, init=method.hp.init, loss="kl", bn_mode=method.hp.bn_mode)
