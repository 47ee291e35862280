"""What a cluster job runs: one run of the store, resumable. submitit calls `checkpoint` when SLURM preempts
the job or its time limit nears, and requeues it; the requeued job calls the same run again, which resumes
from the run's last finished epoch (`last.pt`), so no finished epoch is lost and the result is the same."""
from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import submitit

from bench import atomic
from bench.config import RunConfig
from bench.lease import RunLease
from bench.store import RunDir


class TrainJob(submitit.helpers.Checkpointable):
    """Train a run (unless done) and compute the evaluations its table declares that are still missing: one
    job kind for training jobs and evaluation jobs."""

    def __call__(self, config: dict[str, Any], run_path: str, device: str = "auto",
                 data_root: str | None = None, evaluation: dict[str, Any] | None = None,
                 selection: dict[str, Any] | None = None, compile: bool = False) -> dict[str, Any]:
        from bench.eval_store import Evaluation
        from bench.selection import Best, rule_from_dict
        from bench.train import train_run
        from bench.training.assemble import Runtime, resolve_device

        run = RunDir(Path(run_path))
        print(f"{run.path.name}: starting at epoch {run.epochs_done()} ({run.status()})", flush=True)
        try:
            summary = train_run(RunConfig.from_dict(config), run, Runtime(resolve_device(device), data_root, compile=compile),
                                None if evaluation is None else Evaluation.from_dict(evaluation),
                                Best() if selection is None else rule_from_dict(selection))
        except Exception:  # also failures before training starts (absent dataset, bad hyperparameter)
            atomic.write_text(run.error_file, traceback.format_exc())
            raise
        RunLease(run.path).release()
        return {"run_id": run.path.name,
                "evaluated": None if summary is None else sorted(k for k, v in summary["checkpoints"].items() if v)}
