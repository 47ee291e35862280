"""What an experiment declares: the runs a table needs under a profile, and which number fills each cell.

Profiles: `paper` (the paper's settings, full test set), `fast` (same grid, short schedule, AutoAttack on a
test subset) and `smoke` (a few batches, for tests). A cell names its row and column exactly as in
`tables/published/<paper>.csv`, the run that produces it, the checkpoint, the attack and the statistic, so
that rendering and checking need nothing but the run store and the published file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from bench.config import RunConfig
from bench.registry import Registry

PROFILES = ("paper", "fast", "smoke")


@dataclass(frozen=True)
class PlannedRun:
    key: str  # the experiment's name for the run ("fmnist/tiny-cnn/linf/AT")
    config: RunConfig | None  # None: the bench cannot run it yet (`why` says what is missing)
    why: str = ""


@dataclass(frozen=True)
class Cell:
    row: str  # as in the published file
    column: str
    run: str  # PlannedRun.key
    checkpoint: str  # "best", "last", "last_ema", ...
    attack: str  # "clean", "pgd20", "aa", ...
    stat: Literal["acc", "worst"] = "acc"  # overall or worst-class accuracy


@dataclass(frozen=True)
class Experiment:
    id: str
    paper: str
    table: str  # the published table id ("table1")
    title: str
    plan: Callable[[str], list[PlannedRun]]  # profile → runs
    cells: Callable[[], list[Cell]]
    unit: Literal["acc%", "err%"] = "acc%"

    def runs(self, profile: str) -> list[PlannedRun]:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        return self.plan(profile)


EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def register(experiment: Experiment) -> Experiment:
    EXPERIMENTS.register(experiment.id)(experiment)
    return experiment
