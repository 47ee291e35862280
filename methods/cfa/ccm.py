"""CFA's Class-wise Calibrated Margin (Wei et al. 2023, CFA §4), the add-on `+ccm`: ε_c = (λ₁ + A_c)·ε.

A class the model already defends well (high train robust accuracy A_c) is attacked with a larger
budget, a hard class with a smaller one; the step size stays the run's. λ₁ is lost from the paper's
extracted text [AMBIG]; the recovered defaults depend on the base: AT 0.5, TRADES 0.3, FAT 0.7 (least
certain) — `lam1` < 0 selects that default. The code's 10-epoch warm-up (uniform ε before) is kept.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from bench.hparams import RunFacts
from methods.core.addon import ADDONS
from methods.cfa.class_calibration import ClassCalibrated, check_calibration, resolved_class_acc

BASE_BUDGET = {"pgd_at": 0.5, "trades": 0.3, "fat": 0.7}


@dataclass(frozen=True)
class CCMHparams:
    lam1: float = -1.0  # base budget λ₁; < 0: the base method's default (BASE_BUDGET)
    begin_epoch: int = 10  # 0-based epoch from which ε is calibrated (code's warm-up)
    class_acc: Literal["fidelity", "paper", "code"] = "fidelity"  # form of A_c (methods/cfa/class_calibration.py)

    def __post_init__(self):
        check_calibration(self)

    def resolved(self, run: RunFacts) -> "CCMHparams":
        return dataclasses.replace(self, lam1=base_budget(self.lam1, run.method),
                                   class_acc=resolved_class_acc(self.class_acc, run))


def base_budget(lam1: float, base: str) -> float:
    """λ₁, its placeholder (< 0) resolved to the default of base method `base` (BASE_BUDGET)."""
    if lam1 >= 0:
        return lam1
    if base not in BASE_BUDGET:
        raise ValueError(f"CCM has no default λ₁ for base method {base!r} (defaults: {BASE_BUDGET}); "
                         "set --hp ccm.lam1=<value> (or cfa.lam1)")
    return BASE_BUDGET[base]


@ADDONS.register("ccm")
class CCM(ClassCalibrated):
    Hparams = CCMHparams
    description = "CFA class-wise calibrated margin: ε_c = (λ₁ + train robust acc of c)·ε"
    needs = frozenset({"eps"})  # the base's class_eps

    def __init__(self, hp, base):
        super().__init__(hp, base)
        self.lam1 = hp.lam1  # resolved by build_method (CCMHparams.resolved)

    def calibrate(self, train_acc):
        self.base.class_eps = (self.lam1 + train_acc) * self.ctx.eps

    def on_epoch_end(self, model, epoch, train_class_acc):
        super().on_epoch_end(model, epoch, train_class_acc)
        return {"lam1": self.lam1, "class_eps": self.base.class_eps.tolist()}
