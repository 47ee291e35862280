"""CFA (Wei et al. 2023, CFA §4), the add-on `+cfa`: the named expansion `+ccm[+ccr]+fawa`.

Usable on AT, TRADES and FAT (`pgd_at+cfa`, `trades+cfa`, `fat+cfa`); the ablation rows compose the parts
directly (`pgd_at+ccm`, `trades+ccm+ccr`, `pgd_at+fawa`). CCR joins only on a base with TRADES' per-class β
(`per_class` holds "beta"). The parts' hyperparameters, with their defaults, are set here unprefixed
(`--hp cfa.lam1=0.5` is CCM's λ₁; `begin_epoch` and `class_acc` go to CCM and CCR alike).
"""
from __future__ import annotations

from methods.cfa.ccm import CCM
from methods.cfa.ccr import CCR
from methods.cfa.fawa import FAWA
from methods.core.addon import ADDONS
from methods.core.expansion import Expansion


@ADDONS.register("cfa")
class CFA(Expansion):
    description = "CFA: class-wise calibrated margin (+ regularization for TRADES) and fairness-aware averaging"
    expands_to = {"ccm": CCM, "ccr": CCR, "fawa": FAWA}
    optional = frozenset({"ccr"})
