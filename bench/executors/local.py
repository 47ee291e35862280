"""The local executor: train the missing runs in this process, one after the other."""
from __future__ import annotations

import sys

from bench.experiments.base import PlannedRun
from bench.lease import RunLease
from bench.progress import progress
from bench.store import RunStore
from bench.train import Runtime, train_run

LOCAL_LEASE_HOURS = 24 * 7  # only read from another host; here the lease lives exactly as long as this process


class LocalExecutor:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def run(self, todo: list[PlannedRun], store: RunStore) -> int:
        """Train each run not leased by someone else; returns how many could not be trained."""
        failed = 0
        for run in progress(todo, desc="runs", total=len(todo), leave=True):
            run_dir = store.run_dir(run.config)
            lease = RunLease(run_dir.path)
            if not lease.acquire("local", LOCAL_LEASE_HOURS):
                print(f"  {run.key}: skipped, taken on by {lease.read()}", file=sys.stderr)
                continue
            try:
                train_run(run.config, run_dir, self.runtime)
            except (FileNotFoundError, ValueError) as err:  # e.g. a dataset absent here: the others go on
                failed += 1
                print(f"  {run.key}: not trained: {err}", file=sys.stderr)
            finally:
                lease.release()
        return failed
