"""Single-step training adversaries (UIAT §4.4 and Table 5): FGSM, RS-FGSM (Wong et al. 2020), N-FGSM (de Jorge et al. 2022).

Their reference codes generate the adversary with the model in train mode, hence the default
``bn_mode="train"``. FGSM and RS-FGSM are one-step PGD; N-FGSM is not (its noise is 2ε-wide and
it never projects back to the ε-ball), so it has its own few lines.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .losses import ce_loss
from .mode import model_mode
from .pgd import BN_MODES, check_choice, input_grad, per_sample, pgd, uniform_noise


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float | Tensor, *, bn_mode: str = "train") -> Tensor:
    """x + ε·sign(∇CE(x)), clipped to [0,1] (zero init, step ε; GradAlign's adversary)."""
    return pgd(model, x, y, eps=eps, step_size=eps, steps=1, init="none", bn_mode=bn_mode)


def rs_fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float | Tensor,
    *,
    alpha: float | Tensor | None = None,
    init: str = "uniform",
    bn_mode: str = "train",
    generator: torch.Generator | None = None,
) -> Tensor:
    """δ⁰ ~ U(−ε,ε) (box-clipped; `init="none"`: δ⁰ = 0), one step α (default 1.25ε), clip δ to [−ε,ε], then to
    the box."""
    step = 1.25 * eps if alpha is None else alpha
    return pgd(model, x, y, eps=eps, step_size=step, steps=1, init=init, bn_mode=bn_mode, generator=generator)


def n_fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float | Tensor,
    *,
    k: float = 2.0,
    alpha: float | Tensor | None = None,
    clip: float = 0.0,
    bn_mode: str = "train",
    generator: torch.Generator | None = None,
) -> Tensor:
    """η ~ U(−kε, kε) (box-clipped); x + η + α·sign(∇CE(x+η)) with α = ε by default, clipped to the box.

    No projection to the ε-ball by default: |δ| ≤ kε + α by construction. `clip` > 0 clips δ to [−clip·ε, clip·ε]
    after the box, as the code's `--clip` option (train.py; 1 gives fast AT's projection).
    """
    check_choice("bn_mode", bn_mode, BN_MODES)
    if not k >= 0:
        raise ValueError(f"k must be >= 0; got {k}")
    if not clip >= 0:
        raise ValueError(f"clip must be >= 0 (0: no clipping); got {clip}")
    x = x.detach()
    eps_t = per_sample(eps, x, "eps")
    step = eps_t if alpha is None else per_sample(alpha, x, "alpha")
    with model_mode(model, bn_mode == "train"), torch.enable_grad():
        u = (x + uniform_noise(x, k * eps_t, generator)).clamp_(0, 1)
        g = input_grad(model, u, y, ce_loss)
    x_adv = (u + step * g.sign()).clamp_(0, 1)
    if clip:
        x_adv = x + (x_adv - x).clamp(-clip * eps_t, clip * eps_t)
    return x_adv
