"""A run's state, one answer for every command: `status` (and `status --json`), `run` (its plan, `--dry-run`
and what it trains), `table` and `check` all ask `run_states`.

The store's word for the folder (bench/store.py RunDir.status: done, running, damaged, failed, crashed, new) is
checked against the record's own files (config.json, records.jsonl, jobs.jsonl,
all parsed strictly: a file that does not parse makes the run `damaged`, with the file and the reason), then
refined by the run's cluster job as SLURM's accounting sees it (`sacct`, one call for all runs asked about):
`submitted` while SLURM does not list the job yet, `queued` while it waits, `running` while it runs, `failed`
when SLURM ended it without the run finishing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from bench import lease
from bench.atomic import DamagedFile
from bench.store import RunDir

TRAINABLE = ("new", "failed", "crashed", "damaged")  # what `bench run` (re)trains; damaged ones fail alone


@dataclass(frozen=True)
class RunState:
    status: str  # done, running, queued, submitted, damaged, failed, crashed or new
    reason: str | None = None  # damaged: the file and why; failed: the last line of error.txt
    epochs_done: int | None = None  # epochs whose checkpoint landed; None when unreadable
    epochs: int | None = None  # of the run's config; None before config.json exists or when it is damaged
    job: dict[str, Any] | None = None  # the latest cluster submission (jobs.jsonl)
    slurm_state: str | None = None  # SLURM's state of that job; None when not a SLURM job or not known yet


def run_state(run: RunDir, slurm: Mapping[str, str] | None = None) -> RunState:
    """The state of one run; `slurm` maps job ids to SLURM states (run_states asks sacct once for many runs)."""
    status = run.status()
    try:
        job = lease.last_job(run.path)
        epochs = run.config().epochs if run.config_file.exists() else None
        epochs_done = run.epochs_done()
    except DamagedFile as err:
        return RunState("damaged", str(err))
    slurm_state = (slurm or {}).get(job["job_id"]) if job and job["executor"] == "slurm" else None
    status = _with_job(status, job, slurm_state)
    reason = run.damage() if status == "damaged" else _last_error(run) if status == "failed" else None
    if status == "failed" and reason is None and slurm_state is not None:
        reason = f"SLURM job {job['job_id']} ended {slurm_state}; see its log {job['log']}"
    return RunState(status, reason, epochs_done, epochs, job, slurm_state)


def run_states(runs: Iterable[RunDir]) -> dict[str, RunState]:
    """Run folder name → RunState, with one sacct call for every SLURM job among them."""
    runs = list(runs)
    jobs = {}
    for run in runs:
        try:
            jobs[run.path.name] = lease.last_job(run.path)
        except DamagedFile:
            jobs[run.path.name] = None  # run_state reports it
    ids = [job["job_id"] for job in jobs.values() if job and job["executor"] == "slurm"]
    slurm = lease.slurm_states(ids)
    return {run.path.name: run_state(run, slurm) for run in runs}


def _with_job(status: str, job: dict[str, Any] | None, slurm_state: str | None) -> str:
    """The store's word refined by the run's SLURM job (see the module docstring)."""
    if status in ("done", "running", "failed", "damaged") or job is None or job["executor"] != "slurm":
        return status
    if slurm_state is None:
        return "submitted"
    if slurm_state in lease.SLURM_LIVE:
        return "running" if slurm_state == "RUNNING" else "queued"
    return "failed" if slurm_state in lease.SLURM_ENDED else status


def _last_error(run: RunDir) -> str | None:
    try:
        lines = run.error_file.read_text().strip().splitlines()
    except FileNotFoundError:
        return None
    return lines[-1] if lines else None
