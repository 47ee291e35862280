"""GradAlign (Andriushchenko & Flammarion 2020; UIAT §4.4 and Table 5): FGSM training plus a gradient-alignment regulariser.

L = mean CE(f(x + ε·sign(∇CE(x))), y) + λ·(1 − mean_i cos(g_i, g̃_i)), with g = ∇_x CE at x and g̃ = ∇_x CE at
x + η, η ~ U(−ε, ε): keeping the loss locally linear is what prevents FGSM's catastrophic overfitting.
As in the official code [C]: g is a constant and only g̃ is differentiated (double backprop, create_graph);
x + η is not clipped to the image box; samples where either gradient is exactly zero are left out of the
cosine mean (a batch with none left adds 0); every forward runs in train mode (`bn_mode`).

`clean_grad` (`fidelity`: as --fidelity says): the code takes g through its FGSM input clamp(x + δ, 0, 1) at
δ = 0, written torch.max(torch.min(·, 1), 0) (utils.py `clamp`), whose backward passes half the gradient where x
is exactly 0 or 1 (ties of min/max); `code` reproduces that (g halved on saturated pixels: the regulariser
comes out 5–8 % larger on CIFAR images), `paper` keeps the clean ∇_x CE(x) of the paper's formula.
Left out: the code's random FGSM start (`--attack_init random`, its argparse default) — every GradAlign run of its
scripts passes `--attack_init=zero` (sh/exps_diff_eps_cifar10.sh), and FGSM with a random start is `rs_fgsm`.

λ (`lam`): negative = the official per-ε value, 0.112 / 0.2 / 0.356 at ε = 6 / 8 / 10 per 255 (0.031 counts as
8/255); for any other ε there is no official value and 0.2 is used — pass `lam` to choose one. The resolved λ is
recorded with each epoch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.attacks.mode import model_mode
from bench.attacks.pgd import per_sample, uniform_noise
from bench.attacks.single_step import fgsm
from bench.hparams import RunFacts
from methods.core.base import Batch, Method, StepOutput
from methods.core.registry import METHODS
from methods.core.step_bound import Passes, attack, update

OFFICIAL_LAMBDA = {6: 0.112, 8: 0.2, 10: 0.356}  # ε·255 → λ (official training script)
FALLBACK_LAMBDA = 0.2


def default_lambda(eps: float) -> float:
    for eps_255, lam in OFFICIAL_LAMBDA.items():
        if abs(eps * 255 - eps_255) < 0.1:
            return lam
    return FALLBACK_LAMBDA


def reference_clamp(u: Tensor) -> Tensor:
    """clamp(u, 0, 1) as max(min(u, 1), 0): equal values share the gradient, so it is halved where u is 0 or 1."""
    return torch.maximum(torch.minimum(u, torch.ones_like(u)), torch.zeros_like(u))


def input_gradients(model: nn.Module, u: Tensor, y: Tensor, create_graph: bool, through_clamp: bool = False) -> Tensor:
    """∇_u mean CE(f(u), y), or ∇_u mean CE(f(reference_clamp(u)), y) when `through_clamp`; differentiable w.r.t.
    the parameters when `create_graph`, a constant otherwise.

    (Autocast computes cross_entropy in float32 by itself; no cast, so float64 models stay exact.)"""
    u = u.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(reference_clamp(u) if through_clamp else u)
        grad, = torch.autograd.grad(F.cross_entropy(logits, y), u, create_graph=create_graph)
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
    clean_grad: Literal["fidelity", "paper", "code"] = "fidelity"  # g plain (paper) or through the clamp (code)
    bn_mode: Literal["eval", "train"] = "train"

    def resolved(self, run: RunFacts) -> "GradAlignHparams":
        """The placeholders `lam < 0` (the official λ for the run's ε) and `clean_grad="fidelity"`."""
        return dataclasses.replace(self, lam=default_lambda(run.budget()) if self.lam < 0 else self.lam,
                                   clean_grad=run.fidelity if self.clean_grad == "fidelity" else self.clean_grad)


@METHODS.register("gradalign")
class GradAlign(Method):
    Hparams = GradAlignHparams
    description = "GradAlign (Andriushchenko & Flammarion): FGSM + gradient-alignment regulariser"
    per_class = frozenset({"eps"})  # its adversaries read class_eps (eps_for): CCM may recalibrate it

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return attack(3) + update(1) + Passes(second=1)  # FGSM, ∇x at x and at x+noise (create_graph), reg's backward

    def __init__(self, hp, ctx):
        super().__init__(hp, ctx)
        self.lam = hp.lam  # placeholders resolved by build_method (GradAlignHparams.resolved)
        self.through_clamp = hp.clean_grad == "code"

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x, y, eps = batch.x, batch.y, self.eps_for(batch.y)
        x_adv = fgsm(model, x, y, eps, bn_mode=self.hp.bn_mode)
        with model_mode(model, self.hp.bn_mode == "train"):
            g = input_gradients(model, x, y, create_graph=False, through_clamp=self.through_clamp)
            g_noisy = input_gradients(model, x + uniform_noise(x, per_sample(eps, x, "eps"), None), y,
                                      create_graph=True)
        reg = misalignment(g, g_noisy)
        logits = model(x_adv)
        ce = F.cross_entropy(logits, y)
        return StepOutput(ce + self.lam * reg, logits, {"ce": ce.detach(), "misalignment": reg.detach()})

    def on_epoch_end(self, model, epoch, train_class_acc) -> dict[str, Any]:
        return {"lam": self.lam}
