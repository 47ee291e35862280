"""The PGD engine: the one projected-gradient loop behind every multi-step adversary in the bench.

Training adversaries (PGD-AT, TRADES, CFA, ...), anti-/inverse adversaries (descent) and
evaluation attacks (PGD-20, CW∞) all differ only in loss, init, step, BN mode and ε, so they share
this loop, which is the hot path of every training run: per step one forward, one input-gradient,
and a few fused element-wise ops; nothing else.

Conventions (the papers' shared conventions): images in [0,1]; projection Π = clip to the ε-ball first, then to the box;
ε and step size may differ per sample (CFA's class-wise budgets, FAT/GAIRAT-style schedules).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .losses import ce_loss, cw_margin_loss, kl_to_target, loss_dtype
from .mode import model_mode

LossFn = Callable[[Tensor, Tensor], Tensor]

NORMS = ("linf", "l2")
INITS = ("uniform", "uniform_unclipped", "normal", "none")
LOSSES = ("ce", "cw", "kl")
BN_MODES = ("eval", "train")
NORMAL_INIT_STD = 0.001  # TRADES-lineage init x + 0.001·N(0, I)
_TINY = 1e-12  # guards per-sample norms of all-zero gradients / perturbations


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def per_sample(value: float | Tensor, x: Tensor, name: str) -> Tensor:
    """A scalar or an (N,) tensor as a non-negative (N, 1, ..., 1) tensor that broadcasts over x."""
    n = x.shape[0]
    if not isinstance(value, Tensor):
        if not value >= 0:  # also rejects NaN
            raise ValueError(f"{name} must be >= 0; got {value}")
        return torch.full((n,) + (1,) * (x.dim() - 1), float(value), dtype=x.dtype, device=x.device)
    if value.dim() == 0:
        value = value.expand(n)
    elif value.shape != (n,):
        raise ValueError(f"{name} must be a scalar or a tensor of shape ({n},); got shape {tuple(value.shape)}")
    if not bool((value >= 0).all()):
        raise ValueError(f"{name} must be >= 0 for every sample; got min {value.min().item()}")
    return value.to(device=x.device, dtype=x.dtype).view((n,) + (1,) * (x.dim() - 1))


def _random(kind: str, shape: tuple[int, ...], x: Tensor, generator: torch.Generator | None) -> Tensor:
    """U[0,1) or N(0,1) noise on x's device/dtype, drawn from `generator` (on its own device) or the global RNG."""
    draw = torch.rand if kind == "uniform" else torch.randn
    device = generator.device if generator is not None else x.device
    return draw(shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def uniform_noise(x: Tensor, radius: Tensor, generator: torch.Generator | None) -> Tensor:
    """U(−r, r) per coordinate, r broadcast per sample."""
    return (2 * _random("uniform", x.shape, x, generator) - 1) * radius


def _l2(v: Tensor) -> Tensor:
    return v.flatten(1).norm(dim=1).view((-1,) + (1,) * (v.dim() - 1))


def initial_point(x: Tensor, eps: Tensor, init: str, norm: str, generator: torch.Generator | None) -> Tensor:
    """Spec §0 inits: U (uniform in the ball, then box), T (x + 0.001·N, unclipped), Z (x).

    `uniform_unclipped`: U without the box clip (WMMR's code starts from x + U(−ε, ε) and only the first
    projection clips), so the first gradient is taken outside [0,1] where x is near its bounds.
    """
    if init == "none":
        return x.clone()
    if init == "normal":
        return x + NORMAL_INIT_STD * _random("normal", x.shape, x, generator)
    if norm == "linf":
        start = x + uniform_noise(x, eps, generator)
    else:  # uniform in the L2 ball: uniform direction, radius ε·U^(1/d)
        direction = _random("normal", x.shape, x, generator)
        direction = direction / _l2(direction).clamp_min(_TINY)
        radius = eps * _random("uniform", eps.shape, x, generator) ** (1.0 / x[0].numel())
        start = x + direction * radius
    return start if init == "uniform_unclipped" else start.clamp_(0, 1)


def input_grad(model: nn.Module, u: Tensor, y: Tensor, loss_fn: LossFn) -> Tensor:
    """∇_u loss(model(u), y) via autograd.grad, so parameters' .grad stay untouched.

    Half-precision (autocast) logits are cast to float32 so the loss is exact; others keep the model's dtype.
    """
    u = u.detach().requires_grad_(True)
    return torch.autograd.grad(loss_fn(loss_dtype(model(u)), y), u)[0]


def _resolve_loss(loss: str | LossFn, kappa: float, target: Tensor | None) -> LossFn:
    if callable(loss):
        return loss
    if loss == "ce":
        return ce_loss
    if loss == "cw":
        return lambda logits, y: cw_margin_loss(logits, y, kappa)
    return lambda logits, _y: kl_to_target(logits, target)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float | Tensor,
    step_size: float | Tensor,
    steps: int,
    norm: str = "linf",
    init: str = "uniform",
    loss: str | LossFn = "ce",
    descent: bool = False,
    bn_mode: str = "eval",
    target_probs: Tensor | None = None,
    kappa: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Projected gradient ascent (descent with ``descent=True``) on ``loss`` inside the ε-ball ∩ [0,1].

    eps, step_size: scalars or per-sample (N,) tensors. norm: "linf" (step a·sign(g)) or "l2"
    (step a·g/‖g‖₂, projection rescales δ onto the ball). init: "uniform" | "uniform_unclipped" | "normal" |
    "none" (`initial_point`).
    loss: "ce", "cw" (margin with ``kappa``), "kl" (KL(target ‖ p(u)); target = softmax(model(x))
    computed once, detached, in the attack's BN mode unless ``target_probs`` is given), or any
    callable(logits, y) -> scalar (logits cast by `loss_dtype`). bn_mode: the model's mode during the attack ("train"
    updates BN running statistics, as in the CFA/RS-FGSM codes); every submodule's mode is restored.
    Returns the detached adversarial batch.
    """
    norm = check_choice("norm", norm, NORMS)
    init = check_choice("init", init, INITS)
    bn_mode = check_choice("bn_mode", bn_mode, BN_MODES)
    if not callable(loss):
        check_choice("loss", loss, LOSSES)
    if target_probs is not None and loss != "kl":
        raise ValueError(f"target_probs is only used with loss='kl'; got loss={loss!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0; got {steps!r}")
    if y.shape[:1] != x.shape[:1]:
        raise ValueError(f"x and y disagree on the batch size: {tuple(x.shape)} vs {tuple(y.shape)}")
    if target_probs is not None and target_probs.shape[0] != x.shape[0]:
        raise ValueError(f"target_probs must have one row per sample; got shape {tuple(target_probs.shape)}")
    x = x.detach()
    eps_t = per_sample(eps, x, "eps")
    a = per_sample(step_size, x, "step_size")
    if descent:
        a = -a

    if norm == "linf":
        lo, hi = x - eps_t, x + eps_t

        def advance(u: Tensor, g: Tensor) -> Tensor:
            return (u + a * g.sign()).clamp_(lo, hi).clamp_(0, 1)
    else:

        def advance(u: Tensor, g: Tensor) -> Tensor:
            delta = u + a * g / _l2(g).clamp_min(_TINY) - x
            delta = delta * (eps_t / _l2(delta).clamp_min(_TINY)).clamp_(max=1)
            return (x + delta).clamp_(0, 1)

    with model_mode(model, bn_mode == "train"), torch.enable_grad():
        if loss == "kl" and target_probs is None:
            with torch.no_grad():
                target_probs = F.softmax(loss_dtype(model(x)), dim=1)
        loss_fn = _resolve_loss(loss, kappa, None if target_probs is None else target_probs.detach())
        u = initial_point(x, eps_t, init, norm, generator)
        for _ in range(steps):
            u = advance(u, input_grad(model, u, y, loss_fn))
    return u.detach()
