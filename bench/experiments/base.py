"""What an experiment declares: the runs a table or figure needs under a profile, and which number fills
each cell.

Profiles: `paper` (the paper's settings, full test set), `fast` (same grid, short schedule, AutoAttack on a
test subset) and `smoke` (a few batches, for tests); a table may declare more of its own (`extra_profiles`,
e.g. table1_bilaw's `quick`, a few of its cells in minutes). A cell names its row and column exactly as in
`tables/published/<paper>.csv`, the runs that produce it, the checkpoint, the attack and the statistic, so
that rendering and checking need nothing but the run store and the published file. Runs that share a key
are seeds of one setting: their cell shows mean ± std.

Evaluation and selection are declared beside the plan, not in the runs' configs: an experiment's `evaluation`
(profile, run → bench.eval_store.Evaluation: attacks, n, AutoAttack subset, checkpoints) and `selection`
(run → bench.selection.Rule, which `best` names) are attached to each planned run, so one training serves
tables that evaluate or select differently, and adding an attack evaluates stored checkpoints only.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from bench.config import RunConfig
from bench.eval_store import Evaluation
from bench.registry import Registry
from bench.selection import Best, Last, Rule

PROFILES = ("paper", "fast", "smoke")  # every table and figure has these


@dataclass(frozen=True)
class PlannedRun:
    key: str  # the experiment's name for the setting ("F-MNIST/Tiny-CNN/linf/AT"); seeds share it
    config: RunConfig | None  # None: the bench cannot run it yet (`why` says what is missing)
    why: str = ""
    needs: tuple[str, ...] = ()  # run ids this run reads (HAT's helper, a hot start): they are trained first
    evaluation: Evaluation | None = Evaluation()  # what the table evaluates on it (Experiment.runs fills it in;
    # None: nothing, e.g. a figure drawn from the records)
    selection: Rule = Best()  # the rule its `best` checkpoints are chosen by (filled in by Experiment.runs)


@dataclass(frozen=True)
class Cell:
    row: str  # as in the published file
    column: str
    run: str  # PlannedRun.key
    checkpoint: str = "best"  # "best" (the run's selection rule), "last", "best_ema", "last_fawa", "model@e11", ...
    attack: str = "pgd20"  # "clean", "pgd20", "aa", ... (ignored by statistics that are not per attack)
    stat: str = "acc"  # a name in bench.experiments.stats.STATS; the published cell's unit converts it


def check_profile(profile: str, allowed: Sequence[str] = PROFILES, owner: str = "") -> None:
    if profile not in allowed:
        where = f" for {owner}" if owner else ""
        raise ValueError(f"unknown profile {profile!r}{where}; choose one of {', '.join(allowed)}")


def substitute(runs: list[PlannedRun], substitutions: Mapping[str, str]) -> list[PlannedRun]:
    """Replace datasets by the explicit rules given (e.g. cifar10 → cifar10-jpeg where CIFAR-10 is absent).

    A run that names another planned run by id (HAT's helper in a hyperparameter, a hot start in `init_from`,
    both in `needs`) is pointed at the substituted run, whose id changed with its dataset; the named run is
    converted first, so a chain of such runs stays linked.
    """
    if not substitutions:
        return runs
    planned = {run.config.run_id(): run.config for run in runs if run.config is not None}
    converted: dict[str, RunConfig] = {}

    def renamed(run_id: str) -> str:
        return convert(planned[run_id]).run_id() if run_id in planned else run_id

    def convert(cfg: RunConfig) -> RunConfig:
        old = cfg.run_id()
        if old not in converted:
            converted[old] = dataclasses.replace(
                cfg, dataset=substitutions.get(cfg.dataset, cfg.dataset), hp=tuple((k, renamed(v)) for k, v in cfg.hp),
                init_from=None if cfg.init_from is None else renamed(cfg.init_from))
        return converted[old]

    return [run if run.config is None else
            dataclasses.replace(run, config=convert(run.config), needs=tuple(renamed(n) for n in run.needs))
            for run in runs]


def default_evaluation(profile: str, run: PlannedRun) -> Evaluation:
    return Evaluation()


def no_evaluation(profile: str, run: PlannedRun) -> Evaluation | None:
    """A figure drawn from the per-epoch records only."""
    return None


def default_selection(run: PlannedRun) -> Rule:
    return Best()


def last_selection(run: PlannedRun) -> Rule:
    return Last()


def declare(runs: list[PlannedRun], profile: str, evaluation: Callable[[str, PlannedRun], Evaluation | None],
            selection: Callable[[PlannedRun], Rule]) -> list[PlannedRun]:
    """The planned runs with the evaluation and selection rule their artifact declares for them; a rule whose
    data a run does not monitor is refused here, before anything is trained."""
    out = []
    for run in runs:
        if run.config is not None:
            rule = selection(run)
            rule.check(run.config.eval_attacks, run.config.monitor_on)
            run = dataclasses.replace(run, evaluation=evaluation(profile, run), selection=rule)
        out.append(run)
    return out


@dataclass(frozen=True)
class Experiment:
    """A table: its grid of runs per profile and the cells of the paper's layout."""
    id: str
    paper: str
    table: str  # the published table id ("table1")
    title: str
    plan: Callable[[str], list[PlannedRun]]  # profile → runs
    cells: Callable[[], list[Cell]]
    notes: str = ""  # where our setting departs from the paper's, printed under the table
    extra_profiles: tuple[str, ...] = ()  # profiles only this table has; they may plan a subset of its cells
    evaluation: Callable[[str, PlannedRun], Evaluation] = default_evaluation  # (profile, run) → its evaluation
    selection: Callable[[PlannedRun], Rule] = default_selection  # run → the rule behind its `best` checkpoints

    @property
    def profiles(self) -> tuple[str, ...]:
        return PROFILES + self.extra_profiles

    def runs(self, profile: str, substitutions: Mapping[str, str] | None = None) -> list[PlannedRun]:
        check_profile(profile, self.profiles, self.id)
        return declare(substitute(self.plan(profile), substitutions or {}), profile, self.evaluation, self.selection)


@dataclass(frozen=True)
class FigureInput:
    """What a figure is drawn from: the finished runs of each planned key (seeds in plan order)."""
    profile: str
    runs: dict[str, list]  # key → [RunDir] of finished runs
    missing: list[str]  # keys with no finished run
    planned: dict[str, PlannedRun] = dataclasses.field(default_factory=dict)  # run id → its planned run

    def evaluations(self, run: Any) -> Any:
        """The stored evaluations of a finished run (bench.eval_store.EvaluatedRun) under the figure's
        declared evaluation and selection: the accessor figures read checkpoints' numbers through."""
        from bench.eval_store import EvaluatedRun

        planned = self.planned.get(run.path.name)
        return EvaluatedRun(run, planned.evaluation if planned and planned.evaluation else Evaluation(),
                            planned.selection if planned else Last())


@dataclass(frozen=True)
class Figure:
    """A figure: the runs it reads (none for figures computed in closed form) and how it is drawn.

    `draw(inputs, path_stem)` writes `<path_stem>.png` and `.pdf` and returns their paths.
    """
    id: str
    paper: str
    title: str
    plan: Callable[[str], list[PlannedRun]]
    draw: Callable[[FigureInput, Path], Sequence[Path]]
    notes: str = ""
    evaluation: Callable[[str, PlannedRun], Evaluation | None] = no_evaluation
    selection: Callable[[PlannedRun], Rule] = last_selection

    def runs(self, profile: str, substitutions: Mapping[str, str] | None = None) -> list[PlannedRun]:
        check_profile(profile, PROFILES, self.id)
        return declare(substitute(self.plan(profile), substitutions or {}), profile, self.evaluation, self.selection)


def no_runs(profile: str) -> list[PlannedRun]:
    """The plan of a figure computed in closed form."""
    check_profile(profile)
    return []


EXPERIMENTS: Registry[Experiment] = Registry("experiment")
FIGURES: Registry[Figure] = Registry("figure")


def register(item: Experiment | Figure) -> Experiment | Figure:
    registry = EXPERIMENTS if isinstance(item, Experiment) else FIGURES
    registry.register(item.id)(item)
    return item


def lookup(artifact_id: str) -> Experiment | Figure:
    """A table or figure by id; an unknown id is refused with every valid one (tables and figures)."""
    if artifact_id in FIGURES:
        return FIGURES.get(artifact_id)
    if artifact_id.startswith("fig"):
        return FIGURES.get(artifact_id)
    return EXPERIMENTS.get(artifact_id)
