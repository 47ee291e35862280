"""GradAlign (Andriushchenko & Flammarion 2020; UIAT §4.4 and Table 5): FGSM training plus a gradient-alignment regulariser.

L = mean CE(f(x + ε·sign(∇CE(x))), y) + λ·(1 − mean_i cos(g_i, g̃_i)), with g = ∇_x CE at x and g̃ = ∇_x CE at
x + η, η ~ U(−ε, ε): keeping the loss locally linear is what prevents FGSM's catastrophic overfitting.
As in the official code [C]: g is a constant and only g̃ is differentiated (double backprop, create_graph);
x + η is not clipped to the image box; samples where either gradient is exactly zero are left out of the
cosine mean (a batch with none left adds 0); every forward runs in train mode (`bn_mode`).

λ (`lam`): negative = the official per-ε value, 0.112 / 0.2 / 0.356 at ε = 6 / 8 / 10 per 255 (0.031 counts as
8/255); for any other ε there is no official value and 0.2 is used — pass `lam` to choose one. The resolved λ is
recorded with each epoch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.attacks.mode import model_mode
from bench.attacks.pgd import per_sample, uniform_noise
from bench.attacks.single_step import fgsm
from methods.base import Batch, Method, StepOutput
from methods.registry import METHODS

OFFICIAL_LAMBDA = {6: 0.112, 8: 0.2, 10: 0.356}  # ε·255 → λ (official training script)
FALLBACK_LAMBDA = 0.2


def default_lambda(eps: float) -> float:
    for eps_255, lam in OFFICIAL_LAMBDA.items():
        if abs(eps * 255 - eps_255) < 0.1:
            return lam
    return FALLBACK_LAMBDA


def input_gradients(model: nn.Module, u: Tensor, y: Tensor, create_graph: bool) -> Tensor:
    """∇_u mean CE(f(u), y); differentiable w.r.t. the parameters when `create_graph`, a constant otherwise.

    (Autocast computes cross_entropy in float32 by itself; no cast, so float64 models stay exact.)"""
    u = u.detach().requires_grad_(True)
    with torch.enable_grad():
        grad, = torch.autograd.grad(F.cross_entropy(model(u), y), u, create_graph=create_graph)
    return grad


def misalignment(g: Tensor, g_noisy: Tensor) -> Tensor:
    """Mean over samples with two non-zero gradients of 1 − cos(g_i, g̃_i); 0 when there are none."""
    g, g_noisy = g.flatten(1), g_noisy.flatten(1)
    norm, norm_noisy = g.norm(dim=1), g_noisy.norm(dim=1)
    kept = (norm > 0) & (norm_noisy > 0)
    tiny = torch.finfo(g_noisy.dtype).tiny
    cos = ((g / norm.clamp_min(tiny)[:, None]) * (g_noisy / norm_noisy.clamp_min(tiny)[:, None])).sum(1)
    return torch.where(kept, 1 - cos, torch.zeros_like(cos)).sum() / kept.sum().clamp_min(1)


@dataclass(frozen=True)
class GradAlignHparams:
    lam: float = -1.0  # < 0: official value for the run's ε (see module docstring)
    bn_mode: Literal["eval", "train"] = "train"


@METHODS.register("gradalign")
class GradAlign(Method):
    Hparams = GradAlignHparams
    description = "GradAlign (Andriushchenko & Flammarion): FGSM + gradient-alignment regulariser"

    def __init__(self, hp, ctx):
        super().__init__(hp, ctx)
        self.lam = default_lambda(ctx.eps) if hp.lam < 0 else hp.lam

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x, y, eps = batch.x, batch.y, self.eps_for(batch.y)
        x_adv = fgsm(model, x, y, eps, bn_mode=self.hp.bn_mode)
        with model_mode(model, self.hp.bn_mode == "train"):
            g = input_gradients(model, x, y, create_graph=False)
            g_noisy = input_gradients(model, x + uniform_noise(x, per_sample(eps, x, "eps"), None), y,
                                      create_graph=True)
        reg = misalignment(g, g_noisy)
        logits = model(x_adv)
        ce = F.cross_entropy(logits, y)
        return StepOutput(ce + self.lam * reg, logits, {"ce": ce.detach(), "misalignment": reg.detach()})

    def on_epoch_end(self, model, epoch, train_class_acc) -> dict[str, Any]:
        return {"lam": self.lam}
