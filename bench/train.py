"""Train one run, then evaluate it: assemble (bench.training.assemble) → fit with candidate checkpoints
(bench.training.fit, .retain) → the keyed evaluations a table declares (bench.eval_store).

`train_run` on a finished run only computes the evaluations still missing, so a run killed during its final
evaluation resumes per checkpoint and attack, and a table that adds an attack never retrains.
"""
from __future__ import annotations

from typing import Any

from bench import atomic
from bench.config import RunConfig
from bench.eval_store import Evaluation, run_evaluation
from bench.schedules import milestones
from bench.selection import Best, Rule
from bench.store import RunDir
from bench.training.assemble import Parts, Runtime, assemble, check_heldout, machine
from bench.training.fit import fit, seed_everything
from methods import check_norm, resolved_hparams

DEFAULT_SELECTION = Best()  # highest PGD-20 accuracy on the monitored test images (Rice et al. 2020)


def write_config(cfg: RunConfig, run: RunDir, parts: Parts, rt: Runtime) -> None:
    """config.json and scenario.json, once, when the run starts."""
    if run.config_file.exists():
        return
    atomic.write_json(run.config_file, {
        "run_id": run.path.name,
        "config": cfg.to_dict(),
        "overrides": cfg.overrides(),
        "method_hparams": resolved_hparams(cfg.method, cfg.hp_dict),
        "resolved": {"eps": parts.eps, "step_size": parts.step, "milestones": list(milestones(cfg)),
                     "dataset_note": "cifar10-jpeg is CIFAR-10 re-encoded as JPEG (q75), not cifar10"
                     if cfg.dataset == "cifar10-jpeg" else None,
                     "init_from": None if parts.init is None else parts.init.source},
        "machine": machine(rt.device),
    })
    atomic.write_json(run.path / "scenario.json", parts.scenario.record)


def train_run(cfg: RunConfig, run: RunDir, rt: Runtime = Runtime(), evaluation: Evaluation | None = None,
              selection: Rule = DEFAULT_SELECTION) -> dict[str, Any] | None:
    """Train (or resume) the run in `run`, mark it done, then compute the missing evaluations of `evaluation`
    (what a table or `bench train` declares) with `selection` naming `best`; returns their summary, or None
    without an evaluation (training only)."""
    if evaluation is not None:
        selection.check(cfg.eval_attacks, cfg.monitor_on)
    if run.status() != "done":
        check_heldout(cfg)
        check_norm(cfg.method, cfg.norm)  # before any data is loaded or any folder is made
        parts = assemble(cfg, run, rt, seed_everything)
        run.path.mkdir(parents=True, exist_ok=True)
        write_config(cfg, run, parts, rt)
        fit(cfg, run, parts, rt)
        run.mark_done()
    return None if evaluation is None else run_evaluation(run, evaluation, selection, rt)
