"""The local executor: train the missing runs in this process, one after the other, with a line as each run
starts and ends (its epochs print their own lines, bench.progress)."""
from __future__ import annotations

import time

from bench.experiments.base import PlannedRun
from bench.lease import RunLease
from bench.progress import duration, say
from bench.store import RunStore
from bench.train import train_run
from bench.training.assemble import Runtime

LOCAL_LEASE_HOURS = 24 * 7  # only read from another host; here the lease lives exactly as long as this process


class LocalExecutor:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def run(self, todo: list[PlannedRun], store: RunStore) -> int:
        """Train each run not leased by someone else; returns how many could not be trained."""
        failed = 0
        for i, run in enumerate(todo, 1):
            run_dir = store.run_dir(run.config)
            head = f"[run {i}/{len(todo)}] {run.key}"
            lease = RunLease(run_dir.path)
            if not lease.acquire("local", LOCAL_LEASE_HOURS):
                holder = lease.read()
                say(f"{head}: skipped, taken on by {holder.describe() if holder else 'another process'}")
                continue
            doing = "evaluating {}" if run_dir.status() == "done" else f"training {{}} ({run.config.epochs} epochs)"
            say(f"{head}: {doing.format(run_dir.path.name)}")
            began = time.monotonic()
            try:
                summary = train_run(run.config, run_dir, self.runtime, run.evaluation, run.selection)
                say(f"{head}: done in {duration(time.monotonic() - began)}; {_summary(summary)}")
            except (FileNotFoundError, ValueError) as err:  # a dataset absent here, a damaged file (DamagedFile),
                # a diverged run (Diverged): this run fails, named in one line; the others go on
                failed += 1
                say(f"{head}: not trained: {err}")
            finally:
                lease.release()
        return failed


def _summary(summary: dict | None) -> str:
    first = next((name for name, ev in (summary or {}).get("checkpoints", {}).items() if ev), None)
    if first is None:
        return "nothing evaluated"
    ev = summary["checkpoints"][first]
    return f"{first} checkpoint (epoch {ev['epoch'] + 1}): " + ", ".join(
        f"{name} {100 * a['acc']:.1f}%" for name, a in ev["attacks"].items())
