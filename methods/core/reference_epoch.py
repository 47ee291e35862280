"""The official codes' epoch counter: every paper schedule switches in the epoch its reference switches in.

The runner numbers epochs from 0. An official code compares its thresholds with its own counter, which is
either the 0-based loop index or a 1-based one (`epoch + 1`, or a loop from 1):

  1-based: GAIRAT (GAIRAT.py: weights when `(epoch + 1) >= begin_epoch`, Λ = `adjust_Lambda(epoch + 1)`),
           FAT (FAT.py: `adjust_tau(epoch + 1)`), FRL (frlrw.py: `now_epoch` runs from 1), HAT's
           `range(1, epochs + 1)` that UIAT builds on (its T, T′), CFA's "begin at the 50-th epoch" (FAWA/EMA);
  0-based: MAIL (its train.py: plain AT while `epoch <= 75`), CFA's CCM/CCR warm-up (train.py: `epoch >= begin`).

A schedule names its counter (`counts_from`) and a threshold as in its reference, given as a fraction of
training so it scales to other run lengths (GAIRAT's 60 of 120 → 0.5). Products like 50/120·120 are not
exact in floating point, so comparisons carry a small tolerance: a whole-epoch threshold stays one.
"""
from __future__ import annotations

from typing import Callable

_TOLERANCE = 1e-9
COUNTERS = (0, 1)


def reference_epoch(epoch: int, counts_from: int = 1) -> int:
    """The reference's number for the runner's 0-based `epoch` (`counts_from` = 1: epoch + 1)."""
    if counts_from not in COUNTERS:
        raise ValueError(f"counts_from={counts_from!r}; an official epoch counter starts at 0 or 1")
    return epoch + counts_from


def check_fraction(name: str, fraction: float) -> float:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"{name}={fraction} must be a fraction of training in [0, 1]")
    return fraction


def at_least(epoch: int, fraction: float, epochs: int, counts_from: int = 1) -> bool:
    """Whether the reference's counter has reached `fraction`·epochs (`counter >= T`, GAIRAT's begin epoch)."""
    return reference_epoch(epoch, counts_from) >= fraction * epochs - _TOLERANCE


def beyond(epoch: int, fraction: float, epochs: int, counts_from: int = 1) -> bool:
    """Whether the reference's counter lies past `fraction`·epochs (`counter > T`: MAIL's `epoch <= 75`
    burn-in, FAT's `epoch <= 50`)."""
    return reference_epoch(epoch, counts_from) > fraction * epochs + _TOLERANCE


def first_epoch(switched: Callable[[int], bool], epochs: int) -> int:
    """The first 0-based epoch of a run of `epochs` at which `switched(epoch)` holds; `epochs` if none does."""
    return next((epoch for epoch in range(epochs) if switched(epoch)), epochs)
