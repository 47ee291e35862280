"""AutoAttack (Croce & Hein 2020) through PyPI's `pyautoattack` — the only place the bench touches it.

Spec §3.1: standard version, eval mode, fixed seed. The library reseeds the global torch/CUDA RNGs
inside every attack, so the caller's RNG state is saved and restored around it; otherwise a
mid-training evaluation would silently change the rest of the run. Its progress messages go to the
"auto-attack" logger and are produced only when that logger is enabled for DEBUG.
"""
from __future__ import annotations

import importlib.util
import logging
import random
import sys
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import pyautoattack
import pyautoattack.state
import torch
from torch import Tensor, nn

from bench.progress import progress

from .mode import model_mode

AA_NORMS = ("Linf", "L2", "L1")
AA_VERSIONS = ("standard", "plus", "rand")
_LOGGER = logging.getLogger("auto-attack")  # the name pyautoattack logs under


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore python, numpy, torch CPU and (already initialised) CUDA RNG states on exit."""
    py, npy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


@contextmanager
def _frozen_parameters(model: nn.Module) -> Iterator[None]:
    """FAB calls .backward() on the logits; with frozen parameters no weight gradient is computed or accumulated."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def autoattack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str = "Linf",
    version: str = "standard",
    seed: int = 0,
    batch_size: int = 500,
) -> Tensor:
    """Adversarial examples from AutoAttack's cascade; robust points are returned unchanged.

    Runs in chunks of ``batch_size`` (one progress tick each) on x's device; the model is put in
    eval mode and restored, and parameters' .grad and the global RNG states are left untouched.
    """
    if norm not in AA_NORMS:
        raise ValueError(f"norm must be one of {AA_NORMS}; got {norm!r}")
    if version not in AA_VERSIONS:
        raise ValueError(f"version must be one of {AA_VERSIONS}; got {version!r}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0; got {eps}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int (AutoAttack would otherwise seed from the clock); got {seed!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if y.shape != x.shape[:1]:
        raise ValueError(f"x and y disagree on the batch size: {tuple(x.shape)} vs {tuple(y.shape)}")
    x = x.detach()
    adversary = pyautoattack.AutoAttack(model, device=x.device, eps=float(eps), norm=norm, seed=seed, version=version)
    adversary.verbose = _LOGGER.isEnabledFor(logging.DEBUG)
    chunks = range(0, x.shape[0], batch_size)
    out = []
    with preserved_rng(), model_mode(model, False), _frozen_parameters(model):
        for start in progress(chunks, desc=f"AutoAttack-{norm}", total=len(chunks)):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            out.append(adversary.run_standard_evaluation(xb, yb, batch_size=batch_size)[0])
    return torch.cat(out) if out else x.clone()


def install_robustbench_alias() -> None:
    """Make ``import autoattack`` resolve to pyautoattack, so that ``import robustbench`` works.

    robustbench 1.1.1 imports ``autoattack`` and ``autoattack.state`` (the git-only reference
    package) at import time, even for model loading. Only installed when no real ``autoattack`` is
    importable. Note: ``robustbench.eval.benchmark``'s Linf/L2 path still calls the reference API
    (``log_path=``, ``bs=``) and will not run on pyautoattack; use :func:`autoattack` instead.
    """
    if "autoattack" in sys.modules or importlib.util.find_spec("autoattack") is not None:
        return
    sys.modules["autoattack"] = pyautoattack
    sys.modules["autoattack.state"] = pyautoattack.state
