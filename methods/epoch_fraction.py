"""Paper schedules written as fractions of training ("from epoch 60 of 120" → 0.5), so they scale to any run length.

Epochs are the runner's 0-based indices. Products like 50/120·120 are not exact in floating point, so
comparisons carry a small tolerance: a phase boundary that is a whole epoch in the paper's setting stays one.
"""
from __future__ import annotations

import math

_TOLERANCE = 1e-9


def check_fraction(name: str, fraction: float) -> float:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"{name}={fraction} must be a fraction of training in [0, 1]")
    return fraction


def reached(epoch: int, fraction: float, epochs: int) -> bool:
    """Whether 0-based `epoch` is at or after `fraction` of `epochs` (GAIRAT's begin epoch, MAIL's burn-in end)."""
    return epoch >= fraction * epochs - _TOLERANCE


def passed(epoch: int, fraction: float, epochs: int) -> bool:
    """Whether 0-based `epoch` lies strictly after `fraction` of `epochs` (FAT's "τ = 0 for epochs ≤ 50")."""
    return epoch > fraction * epochs + _TOLERANCE


def first_epoch(fraction: float, epochs: int, name: str) -> int:
    """The first 0-based epoch that has `reached` the fraction (0.75 of 100 → 75; 1 → never within the run)."""
    return math.ceil(check_fraction(name, fraction) * epochs - _TOLERANCE)
