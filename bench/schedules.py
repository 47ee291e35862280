"""Learning-rate schedules, all stepped once per batch so a resumed run continues mid-schedule exactly.

piecewise: lr·gamma^k after the k-th milestone epoch (CFA 100/150, BiLAW 30/60, ...).
onecycle:  torch's OneCycleLR (HAT/UIAT recipe; cosine anneal, momentum cycling, pct_start 0.25).
cyclic:    triangle 0 → lr at 2/5 of training → 0 (Wong / N-FGSM / GradAlign single-step recipes).
cosine:    cosine decay from lr to 0.
constant:  lr throughout (FRL fine-tuning).
"""
from __future__ import annotations

import bisect
import math
from typing import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from bench.config import RunConfig
from bench.registry import Registry

ScheduleFactory = Callable[[Optimizer, RunConfig, int], LRScheduler]
SCHEDULES: Registry[ScheduleFactory] = Registry("schedule")


def milestones(cfg: RunConfig) -> tuple[int, ...]:
    """The given milestones, else 50% and 75% of training, never before epoch 1 and merged when they coincide:
    a one- or two-epoch run starts at the base lr instead of lr·gamma² (10 → (5, 7), 2 → (1,), 1 → (1,))."""
    if cfg.milestones:
        return cfg.milestones
    return tuple(sorted({max(1, cfg.epochs // 2), max(1, (cfg.epochs * 3) // 4)}))


@SCHEDULES.register("piecewise")
def piecewise(opt: Optimizer, cfg: RunConfig, steps_per_epoch: int) -> LRScheduler:
    marks = sorted(milestones(cfg))
    return LambdaLR(opt, lambda it: cfg.gamma ** bisect.bisect_right(marks, it // steps_per_epoch))


@SCHEDULES.register("onecycle")
def onecycle(opt: Optimizer, cfg: RunConfig, steps_per_epoch: int) -> LRScheduler:
    return OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.25)


@SCHEDULES.register("cyclic")
def cyclic(opt: Optimizer, cfg: RunConfig, steps_per_epoch: int) -> LRScheduler:
    total = cfg.epochs * steps_per_epoch
    peak = 0.4 * total

    def factor(it: int) -> float:
        return it / peak if it <= peak else max(0.0, (total - it) / (total - peak))

    return LambdaLR(opt, factor)


@SCHEDULES.register("cosine")
def cosine(opt: Optimizer, cfg: RunConfig, steps_per_epoch: int) -> LRScheduler:
    total = cfg.epochs * steps_per_epoch
    return LambdaLR(opt, lambda it: 0.5 * (1 + math.cos(math.pi * min(it, total) / total)))


@SCHEDULES.register("constant")
def constant(opt: Optimizer, cfg: RunConfig, steps_per_epoch: int) -> LRScheduler:
    return LambdaLR(opt, lambda it: 1.0)


def build_schedule(opt: Optimizer, cfg: RunConfig, steps_per_epoch: int) -> LRScheduler:
    return SCHEDULES.get(cfg.schedule)(opt, cfg, steps_per_epoch)
