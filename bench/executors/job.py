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
    def __call__(self, config: dict[str, Any], run_path: str, device: str = "auto",
                 data_root: str | None = None) -> dict[str, Any]:
        from bench.train import Runtime, resolve_device, train_run

        run = RunDir(Path(run_path))
        print(f"{run.path.name}: starting at epoch {run.epochs_done()} ({run.status()})", flush=True)
        try:
            result = train_run(RunConfig.from_dict(config), run, Runtime(resolve_device(device), data_root))
        except Exception:  # also failures before training starts (absent dataset, bad hyperparameter)
            atomic.write_text(run.error_file, traceback.format_exc())
            raise
        RunLease(run.path).release()
        return {"run_id": result["run_id"], "best_epoch": result["best"]["epoch"]}
