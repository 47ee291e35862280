"""Every evaluation in a run store as one tidy table: a row per (run, checkpoint, attack, class).

Two sources per run folder, named in the `source` column:
  train   the per-epoch evaluations of records.jsonl (checkpoint "epoch", or "epoch_<name>" for an
          averaged model such as EMA), on the run's `eval_n` test images (other monitored sets are left out);
  eval    the stored evaluations of kept checkpoints (bench.eval_store: training's final evaluation, `bench
          eval`, tables' evaluation jobs), checkpoint "<series>@e<epoch>".
`epoch` is 0-based, as in records.jsonl. The checkpoint-level numbers (acc, worst_class,
worst_class_acc, n) repeat on each class row, so a filter on `class` alone gives per-class tables and
`class == 0` gives one row per evaluation.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import pandas as pd

from bench.checkpoints import Checkpoint
from bench.eval_store import stored
from bench.store import RunDir, RunStore

COLUMNS = ("run_id", "status", "method", "dataset", "model", "seed", "epochs", "norm", "eps", "overrides",
           "source", "checkpoint", "epoch", "attack", "n", "acc", "worst_class", "worst_class_acc",
           "class", "class_acc")


def _attack_rows(evaluation: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for attack, ev in evaluation["attacks"].items():
        for cls, class_acc in enumerate(ev["per_class"]):
            yield {"attack": attack, "n": ev["n"], "acc": ev["acc"], "worst_class": ev["worst_class"],
                   "worst_class_acc": ev["worst_class_acc"], "class": cls, "class_acc": class_acc}


def _evaluations(run: RunDir) -> Iterator[tuple[str, str, int, dict[str, Any]]]:
    """(source, checkpoint, epoch, evaluation) of every evaluation stored in the run folder."""
    for record in run.records():
        if "eval" in record:
            yield "train", "epoch", record["epoch"], record["eval"]
        for name, ev in record.get("eval_averaged", {}).items():
            yield "train", f"epoch_{name}", record["epoch"], ev
    for artifact in stored(run):
        ckpt = Checkpoint(artifact["checkpoint"]["series"], artifact["checkpoint"]["epoch"])
        yield "eval", ckpt.label, ckpt.epoch, {"attacks": {artifact["result"]["spec"]["name"]: artifact["result"]}}


def run_rows(run: RunDir) -> Iterator[dict[str, Any]]:
    cfg = run.config()
    resolved = json.loads(run.config_file.read_text())["resolved"]
    head = {"run_id": run.path.name, "status": run.status(), "method": cfg.method, "dataset": cfg.dataset,
            "model": cfg.model, "seed": cfg.seed, "epochs": cfg.epochs, "norm": cfg.norm, "eps": resolved["eps"],
            "overrides": json.dumps(cfg.overrides(), sort_keys=True)}
    for source, checkpoint, epoch, evaluation in _evaluations(run):
        for row in _attack_rows(evaluation):
            yield {**head, "source": source, "checkpoint": checkpoint, "epoch": epoch, **row}


def store_table(store: RunStore, run_ids: tuple[str, ...] = ()) -> pd.DataFrame:
    """The tidy table of every started run (or of `run_ids`, each a run id or unique prefix)."""
    runs = [store.open(r) for r in run_ids] if run_ids else [r for r in store.runs() if r.config_file.exists()]
    rows = [row for run in runs for row in run_rows(run)]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    return table.astype({"epoch": "Int64", "worst_class": "Int64", "seed": "int64", "class": "int64"})
