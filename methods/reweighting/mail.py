"""MAIL (Wang et al. 2021, probabilistic margins): AT / TRADES reweighted by the probabilistic margin.

PM_i = max_{j≠y} p_j(x_i^adv) − p_{y_i}(x_i^adv) (detached) grows as a sample gets closer to, or past, the
boundary; its weight is w_i = 3·sigmoid(s·(PM_i + b)) — the 3 is a constant of the code, not a normalisation.
* `mail_at`: CE-PGD (TRADES init, eval mode); L = mean_i w_i·CE(f(x_i^adv), y_i). README defaults b = −0.5, s = 10.
* `mail_trades`: TRADES adversary; L = mean CE(f(x), y) + β·mean_i w_i·KL(p(x_i) ‖ p(x_i^adv)); b = 0, s = 2,
  β = 5 (the code's default, [AMBIG] vs TRADES' 6).
Burn-in [C]: the unweighted base loss (w = 1) while the code's 0-based epoch is ≤ `burn_in`·epochs (train.py:
`'mail' not in args.method or epoch <= 75` of 120), MAIL after: the first weighted epoch is 0-based 76 of 120.
The code's other burn-in quirks (restart from the epoch-70 checkpoint, stop after epoch 101) are not reproduced.
MAIL's code also combines the weights with MART (`'mart' in method`: weighted MART boosted CE + β·MART's KL);
no table of CAAT, CFA, UIAT or BiLAW uses that variant, so it is not registered.
BiLAW Table 1 writes MAIL as sigmoid(−γ(m − β)) with m = −PM and uses γ = 5, β = 0.05, i.e. pass
`--hp slope=5 --hp bias=0.05`; its CIFAR settings are unstated [AMBIG: README values above].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.attacks.losses import kl_per_sample, loss_dtype
from bench.hparams import require
from methods.core.adversaries import ce_adversary, trades_adversary
from methods.core.base import Batch, Method, StepOutput, Warmup
from methods.core.reference_epoch import beyond, first_epoch
from methods.core.registry import METHODS
from methods.core.step_bound import attack, forward, update

BURN_IN = 75 / 120


@dataclass(frozen=True)
class MAILATHparams:
    bias: float = -0.5  # b
    slope: float = 10.0  # s
    burn_in: float = BURN_IN  # unweighted while the 0-based epoch is ≤ burn_in·epochs
    init: Literal["uniform", "normal", "none"] = "normal"
    bn_mode: Literal["eval", "train"] = "eval"

    def __post_init__(self):
        require(self, "burn_in", 0 <= self.burn_in <= 1, "a fraction of training in [0, 1]")


@dataclass(frozen=True)
class MAILTRADESHparams:
    bias: float = 0.0
    slope: float = 2.0
    beta: float = 5.0
    burn_in: float = BURN_IN
    init: Literal["uniform", "normal", "none"] = "normal"
    bn_mode: Literal["eval", "train"] = "eval"

    def __post_init__(self):
        require(self, "burn_in", 0 <= self.burn_in <= 1, "a fraction of training in [0, 1]")
        require(self, "beta", self.beta >= 0, "a number ≥ 0")


def probabilistic_margin(logits: Tensor, y: Tensor) -> Tensor:
    """max_{j≠y} p_j − p_y per sample, detached."""
    p = loss_dtype(logits.detach()).softmax(1)
    return p.scatter(1, y[:, None], float("-inf")).amax(1) - p.gather(1, y[:, None]).squeeze(1)


def mail_weights(logits_adv: Tensor, y: Tensor, slope: float, bias: float) -> Tensor:
    return 3 * torch.sigmoid(slope * (probabilistic_margin(logits_adv, y) + bias))


class _MAIL(Method):
    per_class = frozenset({"eps"})  # its adversaries read class_eps (eps_for): CCM may recalibrate it
    burn_in_base: ClassVar[str]  # what the burn-in trains, in words

    @classmethod
    def warmup(cls, hp, epochs: int) -> Warmup:
        """Unweighted while the code's 0-based epoch is ≤ `burn_in`·epochs (its `epoch <= 75`)."""
        first = first_epoch(lambda epoch: beyond(epoch, hp.burn_in, epochs, counts_from=0), epochs)
        return Warmup(first, f"{cls.burn_in_base} (MAIL's weights all 1)")

    def weights(self, logits_adv: Tensor, batch: Batch) -> Tensor:
        """MAIL's weights after the burn-in, ones during it."""
        if not self.weighted(batch.epoch):
            return torch.ones(len(batch.y), device=logits_adv.device)
        return mail_weights(logits_adv, batch.y, self.hp.slope, self.hp.bias)


@METHODS.register("mail_at")
class MAILAT(_MAIL):
    Hparams = MAILATHparams
    description = "MAIL-AT (Wang et al.): adversarial CE weighted by 3·sigmoid(s·(PM + b))"
    burn_in_base = "PGD-AT with MAIL's attack"
    norms = ("linf", "l2")

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return attack(self.ctx.attack_steps) + update(1)

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x_adv = ce_adversary(self, model, batch)
        logits = model(x_adv)
        weights = self.weights(logits, batch)
        loss = (weights * F.cross_entropy(logits, batch.y, reduction="none")).mean()
        return StepOutput(loss, logits, {"weight": weights.mean()})


@METHODS.register("mail_trades")
class MAILTRADES(_MAIL):
    Hparams = MAILTRADESHparams
    description = "MAIL-TRADES (Wang et al.): TRADES with the KL term weighted by 3·sigmoid(s·(PM + b))"
    burn_in_base = "TRADES with MAIL-TRADES' attack and β"

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return forward(1) + attack(self.ctx.attack_steps) + update(2)  # KL target, attack, clean + adversarial loss

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x_adv = trades_adversary(self, model, batch)
        logits_nat, logits_adv = model(batch.x), model(x_adv)
        weights = self.weights(logits_adv, batch)
        ce = F.cross_entropy(logits_nat, batch.y)
        kl = kl_per_sample(logits_nat, logits_adv)
        loss = ce + self.hp.beta * (weights * kl).mean()
        return StepOutput(loss, logits_adv, {"ce": ce.detach(), "kl": kl.mean().detach(), "weight": weights.mean()})
