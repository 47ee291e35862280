"""CFA's Fairness-Aware Weight Averaging (Wei et al. 2023, CFA §4), the add-on `+fawa` (averaged model "fawa").

Like EMA, but an epoch's weights enter the average only if the model's worst-class PGD-10 robust accuracy
on the clean 2% validation split reaches a threshold, so checkpoints that sacrificed one class do not
pollute the average. Paper values d = 0.85, threshold 0.2, gating from "the 50-th epoch" (§5.1; counted from 1,
0-based 49); the code uses 0.88, 0.24 and gates from its first epoch (`--hp fawa.start_epoch=1`).
Tiny-ImageNet uses the mean of the worst 20% of classes instead of the worst class (`worst=worst20`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bench.evaluate import AttackSpec, EvalConfig, evaluate
from bench.hparams import require
from methods.core.addon import ADDONS
from methods.standard.ema import WeightAverage
from methods.core.reference_epoch import reference_epoch


@dataclass(frozen=True)
class FAWAHparams:
    decay: float = 0.85
    threshold: float = 0.2
    start_epoch: int = 50  # 1-based: epochs from this one on may enter the average
    val_attack_steps: int = 10
    worst: Literal["class", "worst20"] = "class"

    def __post_init__(self):
        require(self, "decay", 0 <= self.decay < 1, "a number in [0, 1)")
        require(self, "val_attack_steps", self.val_attack_steps >= 1, "an integer ≥ 1")
        require(self, "start_epoch", self.start_epoch >= 1, "an epoch ≥ 1 (counted from 1)")


def validation_robustness(model, split, num_classes: int, eps: float, step: float, steps: int, seed: int,
                          worst: str) -> float:
    """Worst-class (or worst-20% mean) PGD robust accuracy of `model` on `split`, eval mode."""
    spec = AttackSpec("pgd10", "pgd", eps=eps, steps=steps, step_size=step, init="uniform")
    result = evaluate(model, split, num_classes, EvalConfig((spec,), seed=seed), split.x.device)["attacks"]["pgd10"]
    return result["worst_class_acc"] if worst == "class" else result["worst20_mean"]


@ADDONS.register("fawa")
class FAWA(WeightAverage):
    Hparams = FAWAHparams
    description = "fairness-aware weight averaging: EMA over epochs whose worst-class val robustness ≥ threshold"
    heldout_kind = "cfa_val"
    averaged_name = "fawa"

    def __init__(self, hp, base):
        super().__init__(hp, base)
        self.val = self.ctx.heldout_split("val", "fawa")

    def on_epoch_end(self, model, epoch, train_class_acc):
        if reference_epoch(epoch, counts_from=1) < self.hp.start_epoch:
            return {}
        score = validation_robustness(model, self.val, self.ctx.num_classes, self.ctx.eps, self.ctx.step_size,
                                      self.hp.val_attack_steps, self.ctx.seed + epoch, self.hp.worst)
        if score >= self.hp.threshold:
            self.absorb(model)
        return {"val_worst_robust": score, "accepted": score >= self.hp.threshold}
