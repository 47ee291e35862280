"""Adversaries: the PGD engine, single-step attacks, the AutoAttack wrapper and their losses."""
from .autoattack import autoattack, install_robustbench_alias
from .losses import ce_loss, cw_margin_loss, kl_per_sample, kl_to_target
from .mode import model_mode
from .pgd import pgd
from .single_step import fgsm, n_fgsm, rs_fgsm

__all__ = [
    "autoattack",
    "ce_loss",
    "cw_margin_loss",
    "fgsm",
    "install_robustbench_alias",
    "kl_per_sample",
    "kl_to_target",
    "model_mode",
    "n_fgsm",
    "pgd",
    "rs_fgsm",
]
