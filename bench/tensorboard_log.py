"""TensorBoard scalars of a run: every number of every epoch record (records.jsonl), so
`tensorboard --logdir runs` shows each run of the store under its run id.

Tags are the record's key paths joined by '/', lists indexed by position (per class):
`train_loss`, `lr`, `train_class_acc/3`, `eval/attacks/pgd20/worst_class_acc`,
`eval/attacks/pgd20/per_class/3`, `class_eps/3`, `cfa.class_beta/3`, ... Strings, None and the
attacks' constant `spec` are left out; booleans are logged as 0/1. The step is the number of
epochs finished (record epoch + 1).

Resume: a run killed after appending an epoch's record but before its checkpoint trains that epoch
again. The writer of the resumed process is opened with `purge_step` at the first epoch it trains,
which writes a SessionLog.START event; TensorBoard then drops the earlier file's events at that
step and later, so every epoch keeps exactly the values of the attempt that checkpointed it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

SKIPPED_KEYS = frozenset({"epoch", "spec"})  # the step itself; an attack's constant settings


def scalars(record: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(tag, value) for every number in a (nested) record."""
    items = record.items() if isinstance(record, dict) else enumerate(record)
    for key, value in items:
        if key in SKIPPED_KEYS and isinstance(record, dict):
            continue
        tag = f"{prefix}{key}"
        if isinstance(value, (bool, int, float)):
            yield tag, float(value)
        elif isinstance(value, (dict, list, tuple)):
            yield from scalars(value, tag + "/")


def step_of(record: dict[str, Any]) -> int:
    return int(record["epoch"]) + 1


class TensorBoardLog:
    """Writes each epoch record as scalars into the run folder; use as a context manager."""

    def __init__(self, run_path: Path, first_epoch: int):
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard (seconds): only when training

        self.writer = SummaryWriter(log_dir=str(run_path), purge_step=first_epoch + 1)

    def log(self, record: dict[str, Any]) -> None:
        step = step_of(record)
        for tag, value in scalars(record):
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # visible in a running TensorBoard at once

    def __enter__(self) -> "TensorBoardLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.writer.close()
