"""The reproduction ledger: `tables/results/<run_id>/<checkpoint>--<evaluation>.json`, one small reviewable
file per (run, checkpoint, evaluation) that a table cell uses, committed with the code.

Each file holds what is needed to trust and re-render the number without the run's folder: the config and
resolved hyperparameters, the profile and tables that use it, the dataset (and the substitution that chose
it), the training environment of every attempt (code commit, torch, device, precision, threads), the
training wall time and the metrics with their n. No checkpoints. `bench table` and `bench check` read a run
from the run store when it is finished there and from the ledger otherwise, so numbers measured on one
machine (or a cluster) render on any other.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from bench import atomic, environment
from bench.experiments.base import PROFILES, Cell, Experiment, PlannedRun
from bench.checkpoints import Checkpoint
from bench.eval_store import EvaluatedRun, Evaluation
from bench.store import RunStore

LEDGER_DIR = Path(__file__).resolve().parent.parent / "tables" / "results"
FORMAT = 1
TRAINING = ("training", "epoch_seconds")  # the (checkpoint, evaluation) of a cell that reads epoch times

Use = tuple[str, str]  # (checkpoint, evaluation): an attack name, "error_triple" or "epoch_seconds"


def _attack(cell: Cell) -> list[Use]:
    return [(cell.checkpoint, cell.attack)]


USES: dict[str, Callable[[Cell], list[Use]]] = {  # cell statistic (bench.experiments.stats) → what it reads
    "acc": _attack, "worst": _attack, "worst20": _attack,
    "gap": lambda cell: [(cell.checkpoint, "clean"), (cell.checkpoint, cell.attack)],
    "epoch_seconds": lambda cell: [TRAINING],
    **{f"{part}_{which}": (lambda cell: [(cell.checkpoint, "error_triple")])
       for part in ("nat", "bdy", "rob") for which in ("avg", "worst")},
}


def uses(cell: Cell) -> list[Use]:
    if cell.stat not in USES:
        raise ValueError(f"cell {cell.row} | {cell.column}: statistic {cell.stat!r} has no ledger entry; "
                         f"known: {', '.join(sorted(USES))}")
    return USES[cell.stat](cell)


def file_name(use: Use) -> str:
    return f"{use[0]}--{use[1]}.json"


def metrics(run: EvaluatedRun, use: Use) -> dict[str, Any] | None:
    """The measured numbers behind one use, with their n; None when the run did not measure it."""
    checkpoint, evaluation = use
    if use == TRAINING:
        seconds = [r["train_seconds"] for r in run.records() if "train_seconds" in r]
        return {"train_seconds": seconds, "n": len(seconds)} if seconds else None
    ev = run.checkpoint(checkpoint)
    if ev is None:
        return None
    return ev.get("error_triple") if evaluation == "error_triple" else ev["attacks"].get(evaluation)


def entry(run: EvaluatedRun, use: Use, used_by: list[dict[str, str]], substitutions: Mapping[str, str]) -> dict[str, Any]:
    """The ledger file's content for one (run, checkpoint, evaluation) of a finished run."""
    saved = json.loads(run.run.config_file.read_text())
    records = run.records()
    cfg = saved["config"]
    return {
        "format": FORMAT, "run_id": run.path.name, "checkpoint": use[0], "evaluation": use[1],
        "profile": next(p for p in PROFILES if any(u["profile"] == p for u in used_by)), "used_by": used_by,
        "dataset": cfg["dataset"],
        "substitution": {src: dst for src, dst in substitutions.items() if dst == cfg["dataset"]} or None,
        "config": cfg, "method_hparams": saved.get("method_hparams"), "resolved": saved.get("resolved"),
        "selection": run.selection(use[0]) if use != TRAINING else None,
        "environment": environment.attempts(run.path) or None,
        "wall_seconds": {"training": round(sum(r.get("train_seconds", 0.0) for r in records), 1),
                         "epochs": len(records)},
        "metrics": metrics(run, use),
    }


@dataclass(frozen=True)
class LedgerRun:
    """A run as the ledger holds it: read by the cell statistics exactly like a finished RunDir."""
    path: Path

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.path.glob("*.json"))]

    def result(self) -> dict[str, Any]:
        checkpoints: dict[str, dict[str, Any]] = {}
        for e in self.entries():
            if (e["checkpoint"], e["evaluation"]) == TRAINING:
                continue
            ckpt = checkpoints.setdefault(e["checkpoint"], {"attacks": {}})
            if e["evaluation"] == "error_triple":
                ckpt["error_triple"] = e["metrics"]
            else:
                ckpt["attacks"][e["evaluation"]] = e["metrics"]
        return {"run_id": self.path.name, "checkpoints": checkpoints}

    def checkpoint(self, name: str) -> dict[str, Any] | None:
        return self.result()["checkpoints"].get(name)

    def resolve(self, name: str) -> Checkpoint | None:
        """The checkpoint `name` stood for when the entries were written (EvaluatedRun.resolve)."""
        labels = {e["selection"]["checkpoint"] for e in self.entries()
                  if e["checkpoint"] == name and e.get("selection") and e["selection"].get("checkpoint")}
        return Checkpoint.parse(labels.pop()) if len(labels) == 1 else None

    num_classes = None  # not recorded: standard errors of per-class cells count all n images

    def records(self) -> list[dict[str, Any]]:
        timing = self.path / file_name(TRAINING)
        if not timing.exists():
            return []
        return [{"train_seconds": s} for s in json.loads(timing.read_text())["metrics"]["train_seconds"]]

    def status(self) -> str:
        return "done"


class Ledger:
    def __init__(self, root: Path | str = LEDGER_DIR):
        self.root = Path(root)

    def run(self, run_id: str) -> LedgerRun | None:
        path = self.root / run_id
        return LedgerRun(path) if path.is_dir() and any(path.glob("*.json")) else None

    def runs(self) -> list[LedgerRun]:
        return [LedgerRun(p) for p in sorted(self.root.iterdir()) if p.is_dir()] if self.root.exists() else []

    def add(self, store: RunStore, plans: Iterable[tuple[Experiment, str]],
            substitutions: Mapping[str, str] | None = None) -> tuple[list[Path], list[str]]:
        """Record every (run, checkpoint, evaluation) that a cell of these (experiment, profile) plans reads
        from a finished run of `store`; returns the files written and what a cell wanted but the run lacks."""
        subs = dict(substitutions or {})
        wanted: dict[str, dict[Use, list[dict[str, str]]]] = {}
        views: dict[str, EvaluatedRun] = {}
        for experiment, profile in plans:
            groups: dict[str, list[PlannedRun]] = defaultdict(list)
            for planned in experiment.runs(profile, subs):
                groups[planned.key].append(planned)
            for cell in experiment.cells():
                for planned in groups[cell.run]:
                    if planned.config is None or store.run_dir(planned.config).status() != "done":
                        continue
                    views.setdefault(planned.config.run_id(), EvaluatedRun(
                        store.run_dir(planned.config), planned.evaluation or Evaluation(), planned.selection))
                    for use in uses(cell):
                        users = wanted.setdefault(planned.config.run_id(), {}).setdefault(use, [])
                        user = {"table": experiment.id, "profile": profile}
                        if user not in users:
                            users.append(user)
        written, lacking = [], []
        for run_id, by_use in sorted(wanted.items()):
            run = views[run_id]
            contents = {use: entry(run, use, used_by, subs) for use, used_by in sorted(by_use.items())}
            unmeasured = [f"{use[1]} at {use[0]}" for use, content in contents.items() if content["metrics"] is None]
            if unmeasured:  # all of a run or none of it: a half-recorded run would render half its cells
                lacking.append(f"{run_id}: {', '.join(unmeasured)} not measured; none of its files recorded")
                continue
            for use, content in contents.items():
                path = self.root / run_id / file_name(use)
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic.write_text(path, json.dumps(content, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
                written.append(path)
        return written, lacking
