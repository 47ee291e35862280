"""The run store: one folder per run, named by a readable prefix and a hash of its non-default config.

    <root>/<run_id>/config.json     the full config, its overrides and resolved method hyperparameters
                    scenario.json   per-class counts, noise transition actually applied
                    records.jsonl   one JSON line per finished epoch
                    environment.jsonl  commit, torch, device, precision, threads of each training attempt
                    last.pt         everything needed to resume (written atomically every epoch)
                    checkpoints/<series>-e<epoch>.pt  weights a selection rule could pick (bench.checkpoints)
                    evals/<series>-e<epoch>/<attack>-<key>.json  one evaluation of one kept checkpoint under one
                                    attack spec (bench.eval_store); tables read their cells from these
                    heartbeat       touched while a process trains the run
                    error.txt       traceback of the last failure (the run shows as failed until it is run again)
                    lease.json      who has taken the run on (bench/lease.py); jobs.jsonl: its cluster jobs
                    done            written last: the run is finished

A run folder is the single source of truth: tables and status are computed from these files alone.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from bench import atomic
from bench.config import RunConfig

EVALUATION_FIELDS = ("final_attacks", "aa_n", "final_n", "select", "select_score", "select_after")
HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 4 * HEARTBEAT_SECONDS


def default_root() -> Path:
    return Path(os.environ.get("BENCH_RUNS", "runs"))


@dataclass(frozen=True)
class RunDir:
    path: Path

    # -- files -------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def records_file(self) -> Path:
        return self.path / "records.jsonl"

    @property
    def last_ckpt(self) -> Path:
        return self.path / "last.pt"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def evals_dir(self) -> Path:
        return self.path / "evals"

    @property
    def done_file(self) -> Path:
        return self.path / "done"

    @property
    def heartbeat_file(self) -> Path:
        return self.path / "heartbeat"

    @property
    def error_file(self) -> Path:
        return self.path / "error.txt"

    def config(self) -> RunConfig:
        """The run's config; fields that left RunConfig when evaluation and selection became data of their own
        (EVALUATION_FIELDS) are dropped, so runs trained before still show in `status` and can be evaluated."""
        saved = json.loads(self.config_file.read_text())["config"]
        return RunConfig.from_dict({k: v for k, v in saved.items() if k not in EVALUATION_FIELDS})

    # -- records -----------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """Epoch records; a torn last line (killed mid-append) is ignored."""
        if not self.records_file.exists():
            return []
        out = []
        for line in self.records_file.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return out

    def append_record(self, record: dict[str, Any]) -> None:
        with open(self.records_file, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def truncate_records(self, epochs_done: int) -> None:
        """Keep the records of the first `epochs_done` epochs: those a resumed run will not redo."""
        kept = [r for r in self.records() if r["epoch"] < epochs_done]
        atomic.write_text(self.records_file, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))

    # -- liveness ----------------------------------------------------------------------------
    def status(self, now: float | None = None) -> str:
        """'done'; 'running' (fresh heartbeat of a live process); 'failed' (it raised: error.txt says why);
        'crashed' (killed: stale heartbeat, or its process is gone); or 'new'. Failed and crashed runs resume."""
        if self.done_file.exists():
            return "done"
        beating = self.heartbeat_file.exists()
        if beating:
            age = (now or time.time()) - self.heartbeat_file.stat().st_mtime
            if age < STALE_AFTER_SECONDS and not self._owner_died():
                return "running"
        if self.error_file.exists():
            return "failed"
        return "crashed" if beating else "new"

    def _owner_died(self) -> bool:
        """True when the heartbeat names a process on this host that no longer exists (killed before it went stale)."""
        try:
            host, pid, _ = self.heartbeat_file.read_text().split()
            if host != socket.gethostname():
                return False
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except (OSError, ValueError):  # unreadable, or alive but not ours to signal
            return False
        return False

    def epochs_done(self) -> int:
        return len(self.records())

    def heartbeat(self) -> "Heartbeat":
        return Heartbeat(self.heartbeat_file, self.error_file)

    def mark_done(self) -> None:
        atomic.write_text(self.done_file, time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")


class Heartbeat:
    """Touches a file every HEARTBEAT_SECONDS from a daemon thread while a run trains.

    A process that dies stops touching it, which is how `status` tells running from crashed; one that raises
    writes its traceback to error.txt on the way out (status: failed).
    """

    def __init__(self, path: Path, error_file: Path):
        self.path = path
        self.error_file = error_file
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _touch(self) -> None:
        atomic.write_text(self.path, f"{socket.gethostname()} {os.getpid()} {time.time():.0f}\n")

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self._touch()

    def __enter__(self) -> "Heartbeat":
        self._touch()  # before returning, so the run reads as running at once
        self.error_file.unlink(missing_ok=True)  # a new attempt: the last one's failure is history
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._stop.set()
        self._thread.join()
        if exc_type is not None:  # died in-process: say so now instead of after STALE_AFTER_SECONDS
            error = "".join(traceback.format_exception(exc_type, exc, tb))
            atomic.write_text(self.error_file, error)
            os.utime(self.path, (0, 0))


class RunStore:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_root()

    def run_dir(self, cfg: RunConfig) -> RunDir:
        return RunDir(self.root / cfg.run_id())

    def runs(self) -> Iterator[RunDir]:
        """Every run folder: started ones (config.json) and ones submitted to a cluster but not started."""
        if not self.root.exists():
            return
        for path in sorted(self.root.iterdir()):
            if (path / "config.json").exists() or (path / "jobs.jsonl").exists():
                yield RunDir(path)

    def open(self, name_or_path: str) -> RunDir:
        """A stored run by folder path or by run id (a unique prefix is enough)."""
        path = Path(name_or_path)
        if (path / "config.json").exists():
            return RunDir(path)
        matches = [r for r in self.runs() if r.path.name.startswith(name_or_path)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise FileNotFoundError(f"no stored run '{name_or_path}' under {self.root} (see `python -m bench status`)")
        names = ", ".join(r.path.name for r in matches[:5])
        raise ValueError(f"'{name_or_path}' matches {len(matches)} runs ({names}, ...); give more of the name")
