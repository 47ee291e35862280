"""Submit the missing runs of a plan through submitit: as SLURM job arrays (split below the cluster's array
limit, helpers in an earlier array the later one depends on), or in this process with submitit's debug
executor. Each run is leased before it is submitted, and the submission is recorded in the run folder
(`jobs.jsonl`: job id, log, cluster, time) and in the store (`_submissions/`), so `bench status` can show the
SLURM state and log of every run from the shared filesystem alone."""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

import submitit

from bench import atomic
from bench.cost import CPU_CORES, forward_flops, run_cost
from bench.executors.cluster import ClusterProfile
from bench.executors.job import TrainJob
from bench.experiments.base import PlannedRun
from bench.lease import JOBS_FILE, RunLease, slurm_states
from bench.store import RunStore


class SubmititExecutor:
    def __init__(self, kind: str, cluster: ClusterProfile, device: str = "auto", data_root: str | None = None,
                 compile: bool = False):
        if kind not in ("slurm", "debug"):
            raise ValueError(f"submitit executor {kind!r}; choose 'slurm' or 'debug'")
        self.kind, self.cluster, self.device, self.data_root = kind, cluster, device, data_root
        self.compile = compile  # each job's Runtime (bench/compile_option.py)

    def run(self, todo: list[PlannedRun], store: RunStore) -> int:
        """Submit every run not leased by someone else; returns how many failed (debug: ran and raised;
        slurm: could not be submitted). SLURM jobs are not waited for."""
        job_state = _state_lookup(todo, store) if self.kind == "slurm" else (lambda _: None)
        leased = []
        for run in todo:
            lease = RunLease(store.run_dir(run.config).path)
            if lease.acquire(self.kind, self.cluster.lease_hours, job_state):
                leased.append(run)
            else:
                print(f"  {run.key}: skipped, taken on by {lease.read()}", file=sys.stderr)
        ids = {run.config.run_id() for run in leased}
        first = [run for run in leased if not any(need in ids for need in run.needs)]
        later = [run for run in leased if run not in first]
        jobs = self._submit(first, store, dependency=[])
        jobs += self._submit(later, store, dependency=[job.job_id for job, _ in jobs])
        self._record(jobs, store)
        if self.kind == "debug":  # the jobs run here, now; whatever their outcome, they hold the runs no longer
            failed = 0
            for job, run in jobs:
                failed += _failed(job)
                RunLease(store.run_dir(run.config).path).release()
            return failed
        return 0

    def _executor(self, store: RunStore, runs: list[PlannedRun], dependency: list[str]) -> submitit.Executor:
        folder = store.root / "_submitit" / "%j"
        if self.kind == "debug":
            return submitit.DebugExecutor(folder=folder)
        c = self.cluster
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=c.max_requeues,
                                          python=c.python or None)
        extra = c.sbatch_parameters()
        if dependency:
            extra["dependency"] = "afterok:" + ":".join(dependency)
        params: dict[str, Any] = dict(
            job_name="bench", time=self._minutes(runs), cpus_per_task=c.cpus_per_job, mem=f"{c.mem_gb}G",
            array_parallelism=c.array_parallelism, signal_delay_s=c.signal_delay_s, setup=list(c.setup),
            additional_parameters=extra, stderr_to_stdout=True)
        for key, value in (("partition", c.partition), ("account", c.account), ("qos", c.qos)):
            if value:
                params[key] = value
        if c.gpus_per_job:
            params["gpus_per_node"] = c.gpus_per_job
        executor.update_parameters(**params)
        return executor

    def _minutes(self, runs: list[PlannedRun]) -> int:
        """The array's time limit: the profile's, or twice the costliest run's estimate, within its bounds.
        CPU-only profiles are estimated from the CPU hours of bench/cost.py, scaled to the job's cores."""
        c = self.cluster
        if c.time_limit_min:
            return c.time_limit_min
        costs = [run_cost(r.config, forward_flops(r.config.model, r.config.dataset)) for r in runs]
        hours = max(cost.gpu_hours if c.gpus_per_job else cost.cpu_hours * CPU_CORES / c.cpus_per_job for cost in costs)
        return max(c.min_time_min, min(c.max_time_min, math.ceil(2 * 60 * hours)))

    def _submit(self, runs: list[PlannedRun], store: RunStore, dependency: list[str]) -> list[tuple[Any, PlannedRun]]:
        jobs = []
        for start in range(0, len(runs), self.cluster.max_array_size):
            chunk = runs[start:start + self.cluster.max_array_size]
            executor = self._executor(store, chunk, dependency)
            with executor.batch():
                submitted = [executor.submit(TrainJob(), run.config.to_dict(), str(store.run_dir(run.config).path),
                                             self.device, self.data_root,
                                             None if run.evaluation is None else run.evaluation.to_dict(),
                                             run.selection.to_dict(), self.compile) for run in chunk]
            jobs += list(zip(submitted, chunk))
        return jobs

    def _record(self, jobs: list[tuple[Any, PlannedRun]], store: RunStore) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        entries = []
        for job, run in jobs:
            run_dir = store.run_dir(run.config)
            entry = {"job_id": str(job.job_id), "log": str(job.paths.stdout), "executor": self.kind,
                     "cluster": self.cluster.name, "submitted": now, "key": run.key, "run": run_dir.path.name}
            RunLease(run_dir.path).update(job_id=entry["job_id"], log=entry["log"])
            with open(run_dir.path / JOBS_FILE, "a") as f:
                f.write(atomic.json_text(entry) + "\n")
            entries.append(entry)
        if entries:
            atomic.write_json(store.root / "_submissions" / f"{now}-{os.getpid()}.json", entries)


def _failed(job: Any) -> bool:
    try:
        job.result()
        return False
    except Exception as err:  # the run's own traceback is in its error.txt
        print(f"  job {job.job_id} failed: {str(err).strip().splitlines()[-1]}", file=sys.stderr)
        return True


def _state_lookup(todo: list[PlannedRun], store: RunStore):
    """One sacct call for every job that holds a lease on a run of `todo`."""
    job_ids = []
    for run in todo:
        lease = RunLease(store.run_dir(run.config).path).read()
        if lease is not None and lease.job_id:
            job_ids.append(lease.job_id)
    states = slurm_states(job_ids)
    return states.get
