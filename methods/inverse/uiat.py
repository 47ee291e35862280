"""IAT and UIAT (Dong et al. 2023, UIAT §3): CE on PGD adversaries + λ·KL(p_target ‖ p(x̂)), where the
target is the model's prediction on *inverse* adversaries x̃ — inputs pushed towards their class's
high-likelihood region — instead of on the clean input, so misclassified clean points stop being matched.

Per batch: x̂ = PGD-K (CE, init U, `bn_mode`); x̃ = universal (`uiat`: one signed step on the class-wise z, then
x + z_y; ε′ = α′ = 4/255) or instance-wise (`iat`: 5 descent steps of 2/255 in B(x, 4/255)) inverse adversary on
L_inv (Eq. 4, feature regulariser weight β); p(x̃) as a constant; with momentum (Eq. 8) the target is
γ·p_prev + (1−γ)·p(x̃) from epoch T on (p_prev = the value stored at the sample's previous visit), p(x̃) before;
L = mean CE(f(x̂), y) + λ·KL_batchmean(p_target ‖ p(x̂)).

Radii and steps are fractions of the run's ε (`inv_eps_ratio`, `universal_step_ratio`, `instance_step_ratio`):
the paper gives ε′ = 4/255, α′ = 4/255 (universal) and 2/255 (instance-wise) at ε = 8/255 only; other ε (F-MNIST's
0.1, UIAT Table 3's 10–16/255) scale them [AMBIG]; for a fixed 4/255 at ε = 10/255 pass inv_eps_ratio=0.4.
T = `momentum_start`·epochs counted from 1, as HAT's training loop (`range(1, epochs + 1)`) that UIAT builds on:
T = 75 of 100 (App. A.2) is the 75th epoch, 0-based 74.

Resolved notation clash of Eq. 7 / Alg. 1 (spec): CE on the adversarial example, KL pulls p(x̂) towards the
target. [AMBIG] defaults: target detached; inverse-adversary forwards in eval mode (`bn_mode`), outer loss in
train mode; the universal target uses z after this batch's update.

Table 6 ablation rows as overrides of `uiat` (UAG = universal, FR = β > 0, IAM = momentum):
  1 IAT baseline  --hp universal=false --hp beta=0 --hp momentum=false   (= `iat --hp beta=0`)
  2 UAG           --hp beta=0 --hp momentum=false
  3 UAG+FR        --hp momentum=false
  4 UAG+IAM       --hp beta=0
  5 UAG+FR+IAM    (defaults)
`iat` is the same method with universal=false and momentum=false (Alg. 2, β = 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch.nn.functional as F

from bench.hparams import require
from methods.core.adversaries import ce_adversary
from bench.attacks.losses import kl_to_target, loss_dtype
from methods.core.base import Batch, Method, StepOutput
from methods.core.registry import METHODS
from methods.inverse.universal_inverse import (InstanceInverse, TargetMemory, UniversalInverse, fraction_of_eps,
                                       reference_start)
from methods.core.step_bound import attack, forward, update


@dataclass(frozen=True)
class InverseATHparams:
    """What every inverse-adversary method shares (UIAT one-off too)."""

    lam: float = 3.5  # weight of the KL to the target; 3.0 for SVHN
    beta: float = 1.0  # feature regulariser of L_inv (Eq. 4); 0 = CE only
    universal: bool = True  # class-wise universal (UAG) rather than instance-wise inverse adversaries
    inv_eps_ratio: float = 0.5  # ε′ / ε (4/255 at ε = 8/255)
    universal_step_ratio: float = 0.5  # α′ / ε of the one universal step per batch (4/255)
    instance_step_ratio: float = 0.25  # α′ / ε of the instance-wise steps (2/255)
    instance_steps: int = 5
    init: Literal["uniform", "normal", "none"] = "uniform"  # of the PGD adversary x̂
    bn_mode: Literal["eval", "train"] = "eval"  # attack and inverse-adversary forwards

    def __post_init__(self):
        for name in ("lam", "beta"):
            require(self, name, getattr(self, name) >= 0, "a number ≥ 0")
        for name in ("inv_eps_ratio", "universal_step_ratio", "instance_step_ratio"):
            require(self, name, getattr(self, name) > 0, "a number > 0 (a fraction of the run's ε)")
        require(self, "instance_steps", self.instance_steps >= 0, "an integer ≥ 0")


@dataclass(frozen=True)
class UIATHparams(InverseATHparams):
    momentum: bool = True  # inverse-adversary momentum (IAM, Eq. 8)
    gamma: float = 0.9
    momentum_start: float = 0.75  # T / epochs

    def __post_init__(self):
        super().__post_init__()
        require(self, "gamma", 0 <= self.gamma < 1, "a number in [0, 1)")
        require(self, "momentum_start", 0 <= self.momentum_start <= 1, "a fraction of training in [0, 1]")


@dataclass(frozen=True)
class IATHparams(UIATHparams):
    universal: bool = False
    momentum: bool = False


class InverseAdversarialTraining(Method):
    """x̂, inverse-adversary targets and the outer loss; subclasses choose how the target is scheduled."""

    per_class = frozenset({"eps"})  # its adversaries read class_eps (eps_for): CCM may recalibrate it

    def inverse_bound(self):  # anchors F(x), F(x̂) when β > 0, the inverse steps, p(x̃)
        return forward(2 * bool(self.hp.beta)) + attack(1 if self.hp.universal else self.hp.instance_steps) + forward(1)

    def __init__(self, hp: InverseATHparams, ctx):
        super().__init__(hp, ctx)
        radius = fraction_of_eps(hp.inv_eps_ratio, ctx.eps, "inv_eps_ratio")
        if hp.universal:
            self.inverse = UniversalInverse(ctx, radius=radius, beta=hp.beta, bn_mode=hp.bn_mode,
                                            step_size=fraction_of_eps(hp.universal_step_ratio, ctx.eps,
                                                                      "universal_step_ratio"))
        else:
            self.inverse = InstanceInverse(radius=radius, steps=hp.instance_steps, beta=hp.beta, bn_mode=hp.bn_mode,
                                           step_size=fraction_of_eps(hp.instance_step_ratio, ctx.eps,
                                                                     "instance_step_ratio"))

    def adversary(self, model, batch: Batch):
        return ce_adversary(self, model, batch)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "inverse": self.inverse.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.inverse.load_state_dict(state["inverse"])


@METHODS.register("uiat")
class UIAT(InverseAdversarialTraining):
    Hparams = UIATHparams
    description = "UIAT (Dong et al.): CE on PGD adversaries + λ·KL to class-wise universal inverse adversaries"

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return attack(self.ctx.attack_steps) + self.inverse_bound() + update(1)

    def __init__(self, hp: UIATHparams, ctx):
        super().__init__(hp, ctx)
        self.momentum_start = reference_start(hp.momentum_start, ctx.epochs, "momentum_start")
        self.memory = TargetMemory(ctx.train_size, ctx.num_classes, ctx.device) if hp.momentum else None

    def loss(self, model, batch: Batch, optimizer) -> StepOutput:
        x_adv = self.adversary(model, batch)
        target = self.inverse.probs(model, batch.x, batch.y, x_adv)
        if self.memory is not None:
            gamma = self.hp.gamma if batch.epoch >= self.momentum_start else 0.0
            target = self.memory.store(batch.idx, target, gamma)
        logits_adv = model(x_adv)
        ce = F.cross_entropy(logits_adv, batch.y)
        kl = kl_to_target(loss_dtype(logits_adv), target)
        return StepOutput(ce + self.hp.lam * kl, logits_adv, {"ce": ce.detach(), "kl": kl.detach()})

    def state_dict(self) -> dict[str, Any]:
        memory = {} if self.memory is None else {"memory": self.memory.state_dict()}
        return {**super().state_dict(), **memory}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.memory is not None:
            self.memory.load_state_dict(state["memory"])


@METHODS.register("iat")
class IAT(UIAT):
    Hparams = IATHparams
    description = "IAT (Dong et al.): CE on PGD adversaries + λ·KL to instance-wise inverse adversaries"
