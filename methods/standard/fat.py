"""FAT (Zhang et al. 2020, friendly adversarial training): CE on early-stopped PGD adversaries.

Each sample gets a budget of τ extra steps once misclassified, so the adversary stops just past the decision
boundary instead of going deep into the wrong class. FAT appears only in CFA's tables, hence two variants:

* `cfa` (default) — CFA's code [C]: BN in train mode during the attack, no noise, fixed τ = `tau` (3); a sample
  stops as soon as its budget is spent, even if it becomes correct again.
* `official` — FAT's code: eval mode, ω = 0.001 Gaussian noise per step, and a sample stops when it is
  misclassified with no budget left. τ follows the official dynamic schedule of its 120-epoch recipe, as
  fractions of the run: τ = 0 up to 50/120 of training, 1 up to 90/120, 2 after (`tau` is unused). FAT.py calls
  `adjust_tau(epoch + 1)` (τ = 0 while that is ≤ 50), so τ rises at 0-based epochs 50 and 90 of 120.

Budgets are per sample (`eps_for`), with the uniform init scaled by each ε_{y_i}, so CFA's CCM can calibrate
them. Not reproduced from CFA's code: one extra forward pass after the last step (it only moves BN statistics).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.attacks import model_mode
from bench.attacks.losses import loss_dtype
from bench.attacks.pgd import initial_point, per_sample
from bench.hparams import require
from methods.core.base import Batch, Method, StepOutput
from methods.core.reference_epoch import beyond
from methods.core.registry import METHODS
from methods.core.step_bound import attack, update

OFFICIAL_NOISE_STD = 0.001  # ω
OFFICIAL_TAU_STEPS = (50 / 120, 90 / 120)  # τ grows by one after each of these fractions of training


def early_stopped_pgd(model: nn.Module, x: Tensor, y: Tensor, *, eps: float | Tensor, step_size: float | Tensor,
                      steps: int, tau: int, stop: Literal["budget_spent", "wrong_and_spent"],
                      noise_std: float = 0.0, bn_mode: Literal["eval", "train"] = "eval") -> Tensor:
    """L∞ PGD on CE from a uniform start in each sample's ε-ball, where each sample stops on its own.

    Before every step the current iterates are classified; a misclassified sample that still moves spends one
    unit of its budget τ. A sample stops for good once its budget is spent (`budget_spent`, CFA) or once it is
    misclassified with its budget spent (`wrong_and_spent`, FAT). Moving samples take a·sign(∇CE) plus
    `noise_std`·N(0, I), then are projected onto the ε-ball and the box. Returns the detached batch.
    """
    if stop not in ("budget_spent", "wrong_and_spent"):
        raise ValueError(f"stop must be 'budget_spent' or 'wrong_and_spent'; got {stop!r}")
    if tau < 0:
        raise ValueError(f"tau must be >= 0; got {tau}")
    x = x.detach()
    eps_t, a = per_sample(eps, x, "eps"), per_sample(step_size, x, "step_size")
    lo, hi = x - eps_t, x + eps_t
    budget = torch.full(y.shape, tau, dtype=torch.long, device=x.device)
    stopped = torch.zeros(y.shape, dtype=torch.bool, device=x.device)
    with model_mode(model, bn_mode == "train"), torch.enable_grad():
        u = initial_point(x, eps_t, "uniform", "linf", None)
        for _ in range(steps):
            u = u.detach().requires_grad_(True)
            logits = loss_dtype(model(u))
            wrong = logits.argmax(1) != y
            stopped |= (budget == 0) if stop == "budget_spent" else wrong & (budget == 0)
            budget -= (wrong & ~stopped).long()
            if bool(stopped.all()):
                break
            grad = torch.autograd.grad(F.cross_entropy(logits, y), u)[0]
            step = a * grad.sign()
            if noise_std:
                step = step + noise_std * torch.randn_like(u)
            moved = (u.detach() + step).clamp_(lo, hi).clamp_(0, 1)
            u = torch.where(stopped.view((-1,) + (1,) * (x.dim() - 1)), u.detach(), moved)
    return u.detach()


@dataclass(frozen=True)
class FATHparams:
    variant: Literal["cfa", "official"] = "cfa"
    tau: int = 3  # the cfa variant's fixed τ (the official variant schedules τ)

    def __post_init__(self):
        require(self, "tau", self.tau >= 0, "an integer ≥ 0")


@METHODS.register("fat")
class FAT(Method):
    Hparams = FATHparams
    description = "FAT (Zhang et al.): CE on friendly (early-stopped PGD) adversaries"
    per_class = frozenset({"eps"})  # its adversaries read class_eps (eps_for): CCM may recalibrate it

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return attack(self.ctx.attack_steps) + update(1)  # early stopping: at most K steps

    def tau(self, epoch: int) -> int:
        if self.hp.variant == "cfa":
            return self.hp.tau
        return sum(beyond(epoch, fraction, self.ctx.epochs, counts_from=1) for fraction in OFFICIAL_TAU_STEPS)

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        official = self.hp.variant == "official"
        x_adv = early_stopped_pgd(
            model, batch.x, batch.y, eps=self.eps_for(batch.y), step_size=self.ctx.step_size,
            steps=self.ctx.attack_steps, tau=self.tau(batch.epoch),
            stop="wrong_and_spent" if official else "budget_spent",
            noise_std=OFFICIAL_NOISE_STD if official else 0.0, bn_mode="eval" if official else "train")
        logits = model(x_adv)
        return StepOutput(F.cross_entropy(logits, batch.y), logits)
