"""Normalising per-sample weights, the one convention each reweighting method states.

GAIRAT normalises to batch mean 1 (so the loss scale matches plain AT); BiLAW and CAAT-style
meta-weights are normalised to sum 1 (a weighted average). A batch whose weights are all zero
(possible for non-parametric reweighting) falls back to uniform weights instead of dividing by 0.
"""
from __future__ import annotations

import torch


def mean_one(w: torch.Tensor) -> torch.Tensor:
    """w · n / Σw: batch mean 1; uniform where Σw = 0."""
    total = w.sum()
    return torch.where(total > 0, w * w.numel() / total.clamp_min(1e-12), torch.ones_like(w))


def sum_one(w: torch.Tensor) -> torch.Tensor:
    """w / Σw: a weighted average; uniform where Σw = 0."""
    total = w.sum()
    return torch.where(total > 0, w / total.clamp_min(1e-12), torch.full_like(w, 1.0 / w.numel()))
