"""From a plan to work: which planned runs are finished, running, crashed, new or lack their data here, and the
missing ones in the order they must be trained. Every executor (local, cluster) starts from `missing`."""
from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

from bench.data import MissingDatasetError, locate
from bench.eval_store import EvaluatedRun
from bench.experiments.base import PlannedRun
from bench.run_state import TRAINABLE, RunState, run_states
from bench.store import RunStore

NOT_RUNNABLE = "not runnable"
DATA_ABSENT = "data absent"  # a run not trained yet whose dataset is not on this machine
TO_EVALUATE = "to evaluate"  # trained, but an evaluation its table declares is missing (an evaluation job)


def check_filters(planned: list[PlannedRun], label: str, methods: Sequence[str] = (), seeds: Sequence[int] = (),
                  datasets: Sequence[str] = (), models: Sequence[str] = (), norms: Sequence[str] = ()) -> None:
    """Refuse a filter value that no planned run has (a typo, or a model the table does not use), which would
    otherwise select nothing and succeed with '0 runs'; the message lists the values the plan has."""
    configs = [run.config for run in planned if run.config is not None]
    present = {
        "--methods": {c.method for c in configs} | {c.method.split("+")[0] for c in configs},
        "--seeds": {c.seed for c in configs},
        "--datasets": {c.dataset for c in configs},
        "--models": {c.model for c in configs},
        "--norms": {c.norm for c in configs},
    }
    for flag, values in (("--methods", methods), ("--seeds", seeds), ("--datasets", datasets), ("--models", models),
                         ("--norms", norms)):
        unknown = [str(v) for v in values if v not in present[flag]]
        if unknown:
            have = ", ".join(sorted(map(str, present[flag]))) or "none"
            raise ValueError(f"{flag} {','.join(unknown)}: no run of {label} has it; its runs have: {have}")


def absent_datasets(planned: list[PlannedRun], data_root: str | None = None) -> dict[str, str]:
    """Dataset → what to put where, for every planned dataset whose files are not on this machine."""
    absent = {}
    for name in sorted({run.config.dataset for run in planned if run.config is not None}):
        try:
            locate(name, data_root)
        except MissingDatasetError as err:
            absent[name] = str(err)
    return absent


def select(planned: list[PlannedRun], methods: Sequence[str] = (), seeds: Sequence[int] = (),
           datasets: Sequence[str] = (), models: Sequence[str] = (), norms: Sequence[str] = ()) -> list[PlannedRun]:
    """The planned runs of the given methods (base name before any '+add-on' counts too), seeds, datasets,
    models and threat models, and the runs they need (HAT's helper, a hot start); an empty filter keeps everything. Runs the bench
    cannot run are kept only when nothing is filtered."""
    def wanted(run: PlannedRun) -> bool:
        if run.config is None:
            return not (methods or seeds or datasets or models or norms)
        c = run.config
        return ((not methods or c.method in methods or c.method.split("+")[0] in methods)
                and (not seeds or c.seed in seeds) and (not datasets or c.dataset in datasets)
                and (not models or c.model in models) and (not norms or c.norm in norms))
    needed = {need for run in planned if wanted(run) for need in run.needs}
    return [run for run in planned if wanted(run) or (run.config is not None and run.config.run_id() in needed)]


def states(planned: list[PlannedRun], store: RunStore, absent: Mapping[str, str] | None = None) -> dict[str, str]:
    """Run id (or the key of a run the bench cannot run) → its state (bench/run_state.py, SLURM-aware),
    'not runnable', 'data absent' for a new run whose dataset is in `absent` (absent_datasets), or 'to evaluate'
    for a finished run that lacks a declared evaluation."""
    found = _run_states(planned, store)
    out = {}
    for run in planned:
        if run.config is None:
            out[run.key] = NOT_RUNNABLE
        else:
            run_dir = store.run_dir(run.config)
            state = found[run_dir.path.name].status
            if state == "done" and unevaluated(run, store):
                state = TO_EVALUATE
            out[run_dir.path.name] = DATA_ABSENT if state == "new" and run.config.dataset in (absent or {}) else state
    return out


def unevaluated(run: PlannedRun, store: RunStore) -> bool:
    """A finished run that lacks an evaluation its table declares (an evaluation job, no training)."""
    if run.config is None or run.evaluation is None:
        return False
    run_dir = store.run_dir(run.config)
    return run_dir.status() == "done" and bool(EvaluatedRun(run_dir, run.evaluation, run.selection).missing())


def missing(planned: list[PlannedRun], store: RunStore) -> list[PlannedRun]:
    """Jobs: runs to train (new, failed, crashed or damaged: it fails alone, naming the file) and finished runs
    to evaluate (`unevaluated`), once per run and evaluation (tables may share runs), helpers before the runs
    that read them. Queued or running cluster jobs are left to SLURM."""
    found = _run_states(planned, store)
    todo, seen = [], set()
    for run in planned:
        if run.config is None:
            continue
        job = (run.config.run_id(), repr(run.evaluation), repr(run.selection))
        if job in seen:
            continue
        seen.add(job)
        if found[store.run_dir(run.config).path.name].status in TRAINABLE or unevaluated(run, store):
            todo.append(run)
    needed = {run_id for run in todo for run_id in run.needs}
    return sorted(todo, key=lambda run: run.config.run_id() not in needed)  # stable: plan order otherwise


def _run_states(planned: list[PlannedRun], store: RunStore) -> dict[str, RunState]:
    dirs = {store.run_dir(run.config).path.name: store.run_dir(run.config) for run in planned if run.config}
    return run_states(dirs.values())


def summary(run_states: dict[str, str]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(Counter(run_states.values()).items()))
