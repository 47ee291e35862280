"""`+uiat`: UIAT one-off on top of any base method (UIAT App. B.3, Table 5: `nfgsm+uiat`, `rs_fgsm+uiat`,
`gradalign+uiat`; UIAT §4.3, Table 5, App. B.3).

The base's inner maximisation and loss stay as they are; the add-on adds λ·KL(p_target ‖ p(x̂)), where p(x̂) are
the base's logits on the examples it trained on (`StepOutput.logits`, with their graph) and p_target follows the
one-off schedule (Eq. 10): p(x) before T′ (one extra clean forward in train mode, gradient through it by default,
`clean_target_grad` [AMBIG]); during epoch T′ one signed CE-only (β = 0) step per batch on the class-wise universal
perturbation z, and p(clip(x + z_y, 0, 1)) stored per sample; the stored target after T′.

Defaults [AMBIG; UIAT App. A and B.3 give λ and T′ for the multi-step setting only]: λ = 3.5, T′ = 0.8·epochs counted from 1 (0-based epoch 23 of 30), ε′ = α′ = ε/2 (4/255 at
ε = 8/255; scales with the run's ε), z-step and target forwards in eval mode. Hyperparameters are given as
`--hp uiat.<key>=value`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from bench.hparams import require
from methods.core.addon import ADDONS, Addon
from methods.core.base import Batch, StepOutput
from methods.inverse.universal_inverse import OneOffTarget, UniversalInverse, fraction_of_eps
from methods.core.step_bound import attack, forward


@dataclass(frozen=True)
class UIATAddonHparams:
    lam: float = 3.5
    start_fraction: float = 0.8  # T′ / epochs
    inv_eps_ratio: float = 0.5  # ε′ / ε
    step_ratio: float = 0.5  # α′ / ε of the one universal step per batch
    clean_target_grad: bool = True
    bn_mode: Literal["eval", "train"] = "eval"

    def __post_init__(self):
        require(self, "lam", self.lam >= 0, "a number ≥ 0")
        for name in ("inv_eps_ratio", "step_ratio"):
            require(self, name, getattr(self, name) > 0, "a number > 0 (a fraction of the run's ε)")
        require(self, "start_fraction", 0 <= self.start_fraction <= 1, "a fraction of training in [0, 1]")


@ADDONS.register("uiat")
class UIATAddon(Addon):
    Hparams = UIATAddonHparams
    description = "UIAT one-off as a plug-in: + λ·KL(target ‖ p(x̂)) with class-wise universal inverse adversaries"

    def step_bound(self, epoch):  # forward/backward passes one step needs (methods.core.step_bound)
        return self.target.bound(epoch, attack(1) + forward(1))  # β = 0: no anchors

    def __init__(self, hp, base):
        super().__init__(hp, base)
        eps = self.ctx.eps
        self.inverse = UniversalInverse(self.ctx, radius=fraction_of_eps(hp.inv_eps_ratio, eps, "uiat.inv_eps_ratio"),
                                        step_size=fraction_of_eps(hp.step_ratio, eps, "uiat.step_ratio"),
                                        beta=0.0, bn_mode=hp.bn_mode)
        self.target = OneOffTarget(self.ctx, hp.start_fraction, hp.clean_target_grad, "uiat.start_fraction")

    def adjust(self, model, batch: Batch, out: StepOutput) -> StepOutput:
        if out.logits is None:
            raise ValueError("+uiat needs the base method's logits on its training examples (StepOutput.logits)")
        kl = self.target.kl(model, batch.x, batch.idx, batch.epoch, out.logits,
                            lambda: self.inverse.probs(model, batch.x, batch.y, None))
        return StepOutput(out.loss + self.hp.lam * kl, out.logits, {**out.stats, "uiat_kl": kl.detach()})

    def on_epoch_end(self, model, epoch, train_class_acc) -> dict[str, Any]:
        self.target.on_epoch_end(epoch)
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"inverse": self.inverse.state_dict(), "target": self.target.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inverse.load_state_dict(state["inverse"])
        self.target.load_state_dict(state["target"])
