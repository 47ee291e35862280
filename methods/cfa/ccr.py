"""CFA's Class-wise Calibrated Regularization (Wei et al. 2023, CFA §4), the add-on `+ccr` for TRADES-style bases:
β_c = (λ₂ + A_c)·β, with the per-sample loss (CE + β_c·KL)/(1 + β_c).

The 1/(1+β_c) normalisation is part of CCR's definition, so the base must use CFA's loss scale
(`--hp loss_scale=cfa`); the add-on refuses otherwise rather than silently changing the base. [AMBIG] the
paper gives no warm-up for CCR; CCM's 10 epochs are used.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from bench.hparams import RunFacts, require
from methods.core.addon import ADDONS
from methods.cfa.class_calibration import ClassCalibrated, check_calibration, resolved_class_acc


@dataclass(frozen=True)
class CCRHparams:
    lam2: float = 0.5
    begin_epoch: int = 10  # 0-based, as CCM's
    class_acc: Literal["fidelity", "paper", "code"] = "fidelity"  # form of A_c (methods/cfa/class_calibration.py)

    def __post_init__(self):
        check_calibration(self)
        require(self, "lam2", self.lam2 >= 0, "a number ≥ 0")

    def resolved(self, run: RunFacts) -> "CCRHparams":
        return dataclasses.replace(self, class_acc=resolved_class_acc(self.class_acc, run))


@ADDONS.register("ccr")
class CCR(ClassCalibrated):
    Hparams = CCRHparams
    description = "CFA class-wise calibrated regularization: TRADES β_c = (λ₂ + train robust acc of c)·β"
    needs = frozenset({"beta"})  # the base's class_beta

    def __init__(self, hp, base):
        super().__init__(hp, base)
        if getattr(base.hp, "loss_scale", None) != "cfa":
            raise ValueError("ccr needs CFA's per-sample (CE + β_c·KL)/(1 + β_c) loss: add --hp loss_scale=cfa")

    def calibrate(self, train_acc):
        self.base.class_beta = (self.hp.lam2 + train_acc) * self.base.hp.beta

    def on_epoch_end(self, model, epoch, train_class_acc):
        super().on_epoch_end(model, epoch, train_class_acc)
        return {"class_beta": self.base.class_beta.tolist()}
