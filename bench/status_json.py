"""`python -m bench status --json`: the run states of `status` (bench/run_state.py) as one JSON document for
scripts."""
from __future__ import annotations

from bench import atomic
from bench.run_state import RunState, run_states
from bench.store import RunDir, RunStore


def _entry(run: RunDir, state: RunState) -> dict:
    cfg = run.config() if state.epochs is not None else None  # None: not started, or config.json damaged
    return {
        "run_id": run.path.name, "path": str(run.path), "status": state.status, "reason": state.reason,
        "epochs_done": state.epochs_done, "epochs": state.epochs,
        "method": cfg.method if cfg else None, "dataset": cfg.dataset if cfg else None,
        "model": cfg.model if cfg else None, "seed": cfg.seed if cfg else None,
        "error": state.reason if state.status == "failed" else None,
        "error_file": str(run.error_file) if state.status == "failed" and run.error_file.exists() else None,
        "job": None if state.job is None else {**state.job, "slurm_state": state.slurm_state},
    }


def status_document(store: RunStore) -> str:
    """{"runs_dir", "counts": {state: n}, "runs": [...]}, one entry per run as `status` shows it."""
    runs = list(store.runs())
    states = run_states(runs)
    entries = [_entry(run, states[run.path.name]) for run in runs]
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    return atomic.json_text({"runs_dir": str(store.root), "counts": counts, "runs": entries}, indent=2)
