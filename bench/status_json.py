"""`python -m bench status --json`: the run states of `status` as one JSON document for scripts."""
from __future__ import annotations

import json
from typing import Any

from bench.store import RunDir, RunStore


def run_state(run: RunDir, state: str, job: dict[str, Any] | None, slurm_state: str | None) -> dict[str, Any]:
    started = run.config_file.exists()
    cfg = run.config() if started else None
    error = run.error_file.read_text().strip().splitlines()[-1] if state == "failed" and run.error_file.exists() else None
    return {
        "run_id": run.path.name, "path": str(run.path), "status": state,
        "epochs_done": run.epochs_done(), "epochs": cfg.epochs if cfg else None,
        "method": cfg.method if cfg else None, "dataset": cfg.dataset if cfg else None,
        "model": cfg.model if cfg else None, "seed": cfg.seed if cfg else None,
        "error": error, "error_file": str(run.error_file) if error else None,
        "job": None if job is None else {**job, "slurm_state": slurm_state},
    }


def status_document(store: RunStore) -> str:
    """{"runs_dir", "counts": {state: n}, "runs": [...]}, states refined by cluster jobs as in `status`."""
    from bench.cli import _with_job_state
    from bench.executors.submitit_executor import last_job
    from bench.lease import slurm_states

    rows = [(run, run.status(), last_job(run.path)) for run in store.runs()]
    slurm = slurm_states([job["job_id"] for _, _, job in rows if job and job["executor"] == "slurm"])
    runs = []
    for run, state, job in rows:
        known = slurm.get(job["job_id"]) if job else None
        runs.append(run_state(run, _with_job_state(state, job, known), job, known))
    counts: dict[str, int] = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return json.dumps({"runs_dir": str(store.root), "counts": counts, "runs": runs}, indent=2, sort_keys=True)
