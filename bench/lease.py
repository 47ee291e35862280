"""A lease in a run folder: who has taken the run on (a process here, or a SLURM job), so that two `bench run`
calls never train the same run at once, on one machine or across a cluster.

`lease.json` is created with O_EXCL, so of two processes only one gets it. A lease is live while its holder
is: a local process that still exists, or a SLURM job that SLURM still lists as pending or running (jobs
SLURM knows to have ended free their runs at once). When neither can be asked (another host; no accounting
reachable) the lease lasts until it expires, so a killed job never blocks its run forever. A stale lease is
taken over by an atomic rename, so again only one process wins.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from bench import atomic

LEASE_FILE = "lease.json"
JOBS_FILE = "jobs.jsonl"  # one line per cluster submission of the run (bench/executors/submitit_executor.py)
SUBMITTING_SECONDS = 600  # a lease whose job id never arrived (the submitter died) is stale after this
SLURM_LIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED",
              "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING", "PREEMPTED"}
SLURM_ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
               "DEADLINE", "REVOKED", "SPECIAL_EXIT"}


@dataclass(frozen=True)
class Lease:
    holder: str  # "local" or "slurm"
    host: str
    pid: int
    taken: float
    expires: float
    job_id: str = ""  # SLURM job id ("123" or "123_4" for an array task), once submitted
    log: str = ""  # the job's log file, once known

    def describe(self) -> str:
        """Who holds it, for a refusal message: 'process 123 on host-a since 12:00:00' or 'SLURM job 42 (...)'."""
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.taken))
        if self.holder == "slurm" and self.job_id:
            return f"SLURM job {self.job_id} (submitted from {self.host} at {since}; log {self.log or 'not known yet'})"
        return f"{self.holder} process {self.pid} on {self.host} since {since}"


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """Job id → SLURM state from `sacct` (accounting), {} when sacct is absent or fails."""
    if not job_ids:
        return {}
    try:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(job_ids)],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in out.splitlines():
        job, _, state = line.partition("|")
        states[job.strip()] = state.split()[0] if state.strip() else "UNKNOWN"  # "CANCELLED by 0" → CANCELLED
    return states


def last_job(run_path: Path) -> dict | None:
    """The latest submission of a run folder (job id, log, executor, ...), or None; a line that is not JSON
    is damage (DamagedFile naming jobs.jsonl), a torn last line (killed mid-append) is ignored."""
    path = Path(run_path) / JOBS_FILE
    if not path.exists():
        return None
    lines = path.read_text().split("\n")[:-1]  # the piece after the last newline is torn or empty
    entries = [line for line in lines if line.strip()]
    if not entries:
        return None
    try:
        job = atomic.parse_json(entries[-1])
    except ValueError as err:
        raise atomic.DamagedFile(path, f"line {len(lines)} is not valid JSON: {err}") from None
    if not isinstance(job, dict) or "job_id" not in job or "executor" not in job:
        raise atomic.DamagedFile(path, f"line {len(lines)} is not a job entry")
    return job


def is_live(lease: Lease, now: float, job_state: Callable[[str], str | None]) -> bool:
    if lease.holder == "local" and lease.host == socket.gethostname():
        try:
            os.kill(lease.pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    if lease.holder == "slurm":
        if not lease.job_id:
            return now - lease.taken < SUBMITTING_SECONDS
        state = job_state(lease.job_id)
        if state in SLURM_ENDED:
            return False
        if state in SLURM_LIVE:
            return True
    return now < lease.expires


class RunLease:
    """The lease file of one run folder."""

    def __init__(self, run_path: Path):
        self.path = Path(run_path) / LEASE_FILE

    def read(self) -> Lease | None:
        try:
            return Lease(**json.loads(self.path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    def acquire(self, holder: str, hours: float, job_state: Callable[[str], str | None] = lambda _: None) -> bool:
        """Take the run on; False when a live lease of someone else holds it (or another process is taking
        over the same stale lease right now)."""
        now = time.time()
        lease = asdict(Lease(holder, socket.gethostname(), os.getpid(), now, now + 3600 * hours))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return self._take_over(lease, now, job_state)
        with os.fdopen(fd, "w") as f:
            json.dump(lease, f)
        return True

    def _take_over(self, lease: dict, now: float, job_state: Callable[[str], str | None]) -> bool:
        """Replace a stale lease. The marker, named after the stale lease's content, is created by one process
        only; the winner re-reads the lease before replacing it, so a slow loser cannot replace a fresh one."""
        try:
            stale = self.path.read_text()
            current = Lease(**json.loads(stale))
        except FileNotFoundError:  # released meanwhile: start over
            return self.acquire(lease["holder"], (lease["expires"] - now) / 3600, job_state)
        except (json.JSONDecodeError, TypeError):
            current = None  # torn or foreign content: stale
        if current is not None and is_live(current, now, job_state):
            return False
        marker = self.path.with_name(f".{LEASE_FILE}.takeover.{hashlib.sha256(stale.encode()).hexdigest()[:16]}")
        try:
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            return False
        try:
            if self.path.read_text() != stale:
                return False
            atomic.write_json(self.path, lease)
            return True
        except FileNotFoundError:
            return False
        finally:
            marker.unlink(missing_ok=True)

    def update(self, **fields: str) -> None:
        """Record what became known after taking the lease (job id, log path)."""
        current = self.read()
        if current is not None:
            atomic.write_json(self.path, {**asdict(current), **fields})

    def release(self) -> None:
        self.path.unlink(missing_ok=True)
