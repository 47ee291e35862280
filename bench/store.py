"""The run store: one folder per run, named by a readable prefix and a hash of its non-default config.

    <root>/<run_id>/config.json     the full config, its overrides and resolved method hyperparameters
                    scenario.json   per-class counts, noise transition actually applied
                    records.jsonl   one JSON line per finished epoch
                    environment.jsonl  commit, torch, device, precision, threads of each training attempt
                    last.pt         everything needed to resume (written atomically every epoch, with its
                                    checksum: bench/checkpoint_io.py)
                    last_prev.pt    the epoch before's last.pt, resumed from when last.pt is damaged
                                    (removed when the run is done)
                    last.pt.damaged a damaged last.pt, moved aside (kept for inspection, never reused)
                    checkpoints/<series>-e<epoch>.pt  weights a selection rule could pick (bench.checkpoints)
                    evals/<series>-e<epoch>/<attack>-<key>.json  one evaluation of one kept checkpoint under one
                                    attack spec (bench.eval_store); tables read their cells from these
                    heartbeat       touched while a process trains the run
                    error.txt       traceback of the last failure (the run shows as failed until it is run again)
                    damaged.txt     why the run cannot resume (no intact checkpoint; the run shows as damaged)
                    lease.json      who has taken the run on (bench/lease.py); jobs.jsonl: its cluster jobs
                    done            written last: the run is finished
                    EXTRA_FILES     what methods and figures add beside the record (`RunDir.extra(name)`)

A run folder is the single source of truth: tables and status are computed from these files alone. Every
file is verified when read: JSON strictly, checkpoints by checksum and with weights_only=True; a damaged one
raises bench.atomic.DamagedFile naming it.
"""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from bench import atomic
from bench.atomic import DamagedFile
from bench.checkpoint_io import load_checkpoint, read_meta, save_checkpoint
from bench.config import RunConfig
from bench.lease import LEASE_FILE
from bench.progress import say

EVALUATION_FIELDS = ("final_attacks", "aa_n", "final_n", "select", "select_score", "select_after")
HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 4 * HEARTBEAT_SECONDS


# Files methods and figures add to a run folder, by name; they reach them through `RunDir.extra`, so this module
# names every file a run folder can hold.
EXTRA_FILES = {
    "caat_samples": "caat_samples",  # folder: CAAT's per-epoch, per-sample adversary choices (record_samples=true)
    "caat_fig4_series": "fig4_series.json",  # CAAT Fig. 4: those choices split by clean / noisy label
    "bilaw_weight_probe": "fig_bilaw_weights.json",  # BiLAW Figs. 3–5: the final weighting net on test images
    "uiat_pgd20_strength": "uiat_pgd20_strength.json",  # UIAT Figs. 1/4: PGD-20 accuracy by signed strength
    "uiat_aa_strength": "uiat_aa_strength.json",  # UIAT Fig. 4: AA accuracy by signed strength
}


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
    def prev_ckpt(self) -> Path:
        return self.path / "last_prev.pt"

    @property
    def damaged_file(self) -> Path:
        return self.path / "damaged.txt"

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

    def extra(self, name: str) -> Path:
        """The path of a declared extra file (EXTRA_FILES): a method's or figure's artifact beside the record."""
        if name not in EXTRA_FILES:
            raise ValueError(f"no extra run file {name!r}; declared: {', '.join(sorted(EXTRA_FILES))}")
        return self.path / EXTRA_FILES[name]

    def config(self) -> RunConfig:
        """The run's config, read strictly; fields that left RunConfig when evaluation and selection became data
        of their own (EVALUATION_FIELDS) are dropped, so runs trained before still show in `status`."""
        content = atomic.read_json(self.config_file)
        try:
            saved = content["config"]
            return RunConfig.from_dict({k: v for k, v in saved.items() if k not in EVALUATION_FIELDS})
        except (KeyError, TypeError, ValueError) as err:
            raise DamagedFile(self.config_file, f"not a run config: {type(err).__name__}: {err}") from None

    # -- records -----------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """Epoch records, parsed strictly. A torn last line (killed mid-append: no final newline) is ignored;
        any other line that does not parse is damage (DamagedFile)."""
        if not self.records_file.exists():
            return []
        try:
            text = self.records_file.read_text()
        except UnicodeDecodeError:
            raise DamagedFile(self.records_file, "not UTF-8 text") from None
        lines = text.split("\n")
        out = []
        for number, line in enumerate(lines[:-1], 1):  # the last piece has no newline: torn, or "" when complete
            try:
                record = atomic.parse_json(line)
            except ValueError as err:
                raise DamagedFile(self.records_file, f"line {number} is not valid JSON: {err}") from None
            if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                raise DamagedFile(self.records_file, f"line {number} is not an epoch record")
            out.append(record)
        return out

    def append_record(self, record: dict[str, Any]) -> None:
        line = atomic.json_text(record) + "\n"  # before opening: a NaN raises here, not after a torn write
        with open(self.records_file, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def truncate_records(self, epochs_done: int) -> None:
        """Keep the records of the first `epochs_done` epochs: those a resumed run will not redo."""
        kept = [r for r in self.records() if r["epoch"] < epochs_done]
        atomic.write_text(self.records_file, "".join(atomic.json_text(r) + "\n" for r in kept))

    # -- checkpoints -------------------------------------------------------------------------
    def save_last(self, state: dict[str, Any]) -> None:
        """Write last.pt (with its checksum and epoch), keeping the previous one as last_prev.pt (a hard link,
        so last.pt itself is never absent) to resume from should last.pt be found damaged."""
        if self.last_ckpt.exists():
            link = self.path / f".{self.prev_ckpt.name}.link{atomic.TEMP_SUFFIX}"
            link.unlink(missing_ok=True)
            try:
                os.link(self.last_ckpt, link)
            except OSError:  # a filesystem without hard links: a copy, still renamed into place whole
                shutil.copyfile(self.last_ckpt, link)
            os.replace(link, self.prev_ckpt)
        save_checkpoint(self.last_ckpt, state, meta={"epoch": state["epoch"]})

    def resume_point(self, map_location: Any = "cpu") -> dict[str, Any] | None:
        """Open the run to train it (under its lease): remove killed writes' temp files, verify config.json,
        and return the newest intact checkpoint (last.pt, else last_prev.pt), or None to start fresh. A damaged
        last.pt is named, moved aside to last.pt.damaged and the previous epoch's resumed; with no intact
        checkpoint left the run is marked damaged and DamagedFile raised: nothing is silently replaced."""
        atomic.remove_stale_temps(self.path, keep=(LEASE_FILE,))  # a submitter may be updating the lease now
        if self.config_file.exists():
            self.config()
        damaged = []
        for path in (self.last_ckpt, self.prev_ckpt):
            if not path.exists():
                continue
            try:
                state = load_checkpoint(path, map_location)
            except DamagedFile as err:
                damaged.append(err)
                continue
            if damaged:  # last.pt was the damaged one
                os.replace(self.last_ckpt, self.path / "last.pt.damaged")
                say(f"{damaged[0]}; resuming from {path.name} (epoch {state['epoch'] + 1}), the damaged file "
                    "kept as last.pt.damaged")
            self.damaged_file.unlink(missing_ok=True)
            return state
        if damaged:
            reason = "; ".join(str(err) for err in damaged)
            self.mark_damaged(f"{reason}; no intact checkpoint to resume from (move the file away to train from "
                              "scratch)")
            raise DamagedFile(damaged[0].path, f"{damaged[0].reason}; no intact checkpoint to resume from")
        self.damaged_file.unlink(missing_ok=True)
        return None

    def mark_damaged(self, reason: str) -> None:
        atomic.write_text(self.damaged_file, " ".join(reason.split()) + "\n")

    def damage(self) -> str | None:
        """Why the run is marked damaged (damaged.txt), or None."""
        try:
            return self.damaged_file.read_text().strip() or "damaged"
        except FileNotFoundError:
            return None

    # -- liveness ----------------------------------------------------------------------------
    def status(self, now: float | None = None) -> str:
        """'done'; 'running' (fresh heartbeat of a live process); 'damaged' (no intact checkpoint to resume from:
        damaged.txt says which file and why); 'failed' (it raised: error.txt says why);
        'crashed' (killed: stale heartbeat, or its process is gone); or 'new'. Failed and crashed runs resume."""
        if self.done_file.exists():
            return "done"
        beating = self.heartbeat_file.exists()
        if beating:
            age = (now or time.time()) - self.heartbeat_file.stat().st_mtime
            if age < STALE_AFTER_SECONDS and not self._owner_died():
                return "running"
        if self.damaged_file.exists():
            return "damaged"
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
        """Epochs whose checkpoint landed: a record appended before a kill that beat its last.pt is not counted
        (the resumed run redoes that epoch)."""
        records = len(self.records())
        if self.done_file.exists():
            return records
        if not self.last_ckpt.exists():
            return 0
        meta = read_meta(self.last_ckpt)
        return records if meta is None or "epoch" not in meta else min(records, meta["epoch"] + 1)

    def heartbeat(self) -> "Heartbeat":
        return Heartbeat(self.heartbeat_file, self.error_file)

    def mark_done(self) -> None:
        atomic.write_text(self.done_file, time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
        self.prev_ckpt.unlink(missing_ok=True)  # only a resume could need it


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
