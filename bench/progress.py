"""What a person watching a run sees: tqdm bars on a terminal, and one plain line per epoch and per run
everywhere (written through tqdm so bars stay intact on a terminal, flushed at once so a SLURM log or a pipe
shows training as it goes)."""
from __future__ import annotations

import datetime
import os
import sys
import time
from typing import Any, Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def quiet() -> bool:
    """No bars under CI, when BENCH_QUIET is set, or when stderr is not a terminal."""
    return bool(os.environ.get("CI") or os.environ.get("BENCH_QUIET")) or not sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str, total: int | None = None, leave: bool = False) -> Iterable[T]:
    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=quiet(), dynamic_ncols=True)


def say(line: str) -> None:
    """One line on stderr, between the bars of a terminal or straight into a log."""
    tqdm.write(line, file=sys.stderr)
    sys.stderr.flush()


def duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


class EpochLog:
    """One line per finished epoch: loss, lr, train accuracy, the per-epoch evaluations (overall and worst
    class), wall seconds per epoch (training and evaluation) and the time left for the remaining epochs."""

    def __init__(self, name: str, start_epoch: int, epochs: int):
        self.name, self.start, self.epochs = name, start_epoch, epochs
        self.began = self.last = time.monotonic()

    def epoch(self, record: dict[str, Any]) -> None:
        now = time.monotonic()
        took, self.last = now - self.last, now
        done = record["epoch"] + 1
        per_epoch = (now - self.began) / (done - self.start)
        parts = [f"loss {record['train_loss']:.4f}", f"lr {record['lr']:.3g}", f"train acc {100 * record['train_acc']:.1f}%"]
        held_out = {f" on {name}": by_series.get("", {}) for name, by_series in record.get("monitor", {}).items()}
        for where, evaluation in {"": record.get("eval", {}), **held_out}.items():
            for attack, ev in evaluation.get("attacks", {}).items():
                worst = ev.get("worst_class_acc")
                parts.append(f"{attack}{where} {100 * ev['acc']:.1f}%"
                             + ("" if worst is None else f" (worst class {100 * worst:.1f}%)"))
        parts += [f"{took:.1f} s/epoch", f"ETA {duration(per_epoch * (self.epochs - done))}"]
        say(f"{self.name} epoch {done}/{self.epochs}: " + ", ".join(parts))
