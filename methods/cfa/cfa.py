"""CFA (Wei et al. 2023, CFA §4), the add-on `+cfa` = CCM (+ CCR when the base has TRADES' β) + FAWA.

Usable on AT, TRADES and FAT (`pgd_at+cfa`, `trades+cfa`, `fat+cfa`); the ablation rows compose the parts
directly (`pgd_at+ccm`, `trades+ccm+ccr`, `pgd_at+fawa`). The parts' hyperparameters appear here unprefixed
(`--hp cfa.lam1=0.5`), with the same defaults as `+ccm`, `+ccr` and `+fawa`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from bench.hparams import RunFacts, require
from methods.core.addon import ADDONS, Addon
from methods.cfa.ccm import CCM, CCMHparams, base_budget
from methods.cfa.ccr import CCR, CCRHparams
from methods.cfa.class_calibration import check_calibration, resolved_class_acc
from methods.cfa.fawa import FAWA, FAWAHparams, check_fawa


@dataclass(frozen=True)
class CFAHparams:
    lam1: float = -1.0  # CCM base budget; < 0: the base's default (AT 0.5, TRADES 0.3, FAT 0.7)
    lam2: float = 0.5  # CCR
    begin_epoch: int = 10  # CCM/CCR warm-up (0-based epoch)
    decay: float = 0.85  # FAWA
    threshold: float = 0.2
    start_epoch: int = 50  # FAWA: counted from 1, the paper's "50-th epoch"
    val_attack_steps: int = 10
    worst: Literal["class", "worst20"] = "class"
    class_acc: Literal["fidelity", "paper", "code"] = "fidelity"  # form of A_c (methods/cfa/class_calibration.py)

    def __post_init__(self):
        check_calibration(self)
        check_fawa(self)
        require(self, "lam2", self.lam2 >= 0, "a number ≥ 0")

    def resolved(self, run: RunFacts) -> "CFAHparams":
        return dataclasses.replace(self, lam1=base_budget(self.lam1, run.method),
                                   class_acc=resolved_class_acc(self.class_acc, run))


@ADDONS.register("cfa")
class CFA(Addon):
    Hparams = CFAHparams
    description = "CFA: class-wise calibrated margin (+ regularization for TRADES) and fairness-aware averaging"
    heldout_kind = "cfa_val"

    def __init__(self, hp, base):
        super().__init__(hp, base)
        self.parts: dict[str, Addon] = {"ccm": CCM(CCMHparams(hp.lam1, hp.begin_epoch, hp.class_acc), base)}
        if hasattr(base, "class_beta"):
            self.parts["ccr"] = CCR(CCRHparams(hp.lam2, hp.begin_epoch, hp.class_acc), base)
        self.parts["fawa"] = FAWA(FAWAHparams(hp.decay, hp.threshold, hp.start_epoch, hp.val_attack_steps,
                                              hp.worst), base)

    def on_epoch_start(self, model, epoch):
        for part in self.parts.values():
            part.on_epoch_start(model, epoch)

    def on_epoch_end(self, model, epoch, train_class_acc):
        return {f"{name}.{k}": v for name, part in self.parts.items()
                for k, v in part.on_epoch_end(model, epoch, train_class_acc).items()}

    def averaged_models(self):
        return self.parts["fawa"].averaged_models()

    def state_dict(self):
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state):
        for name, part in self.parts.items():
            part.load_state_dict(state[name])
