"""The statistics a table cell can show, read from a finished run's files, and their conversion to the
unit of the published cell (accuracy or error in %, seconds or minutes per epoch, accuracy gaps in points).

A statistic returns a `Measured` (value + what kind of quantity it is) or None when the run did not measure
it (say, AutoAttack was not in its final attacks); the unit of the published cell decides how it is shown.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import mean
from typing import Callable, Literal

from bench.experiments.base import Cell
from bench.registry import Registry
from bench.store import RunDir

Kind = Literal["acc", "err", "seconds", "gap"]


@dataclass(frozen=True)
class Measured:
    value: float
    kind: Kind  # acc / err / gap: fractions of the test set; seconds: wall-clock


Stat = Callable[[RunDir, Cell], "Measured | None"]
STATS: Registry[Stat] = Registry("cell statistic")


def _attack(run: RunDir, cell: Cell) -> dict | None:
    checkpoint = run.result()["checkpoints"].get(cell.checkpoint)
    return None if checkpoint is None else checkpoint["attacks"].get(cell.attack)


def _attack_field(field: str) -> Stat:
    def stat(run: RunDir, cell: Cell) -> Measured | None:
        ev = _attack(run, cell)
        return None if ev is None or ev.get(field) is None else Measured(ev[field], "acc")
    return stat


STATS.register("acc")(_attack_field("acc"))  # overall accuracy under the cell's attack
STATS.register("worst")(_attack_field("worst_class_acc"))  # accuracy of the worst class
STATS.register("worst20")(_attack_field("worst20_mean"))  # mean accuracy of the worst 20% of classes (CFA TI)


def _error_triple(part: str, which: str) -> Stat:
    """FRL/CAAT natural / boundary / robust error, average or worst class (PGD-20 is the attack)."""
    def stat(run: RunDir, cell: Cell) -> Measured | None:
        checkpoint = run.result()["checkpoints"].get(cell.checkpoint)
        if checkpoint is None or "error_triple" not in checkpoint:
            return None
        return Measured(checkpoint["error_triple"][part][which], "err")
    return stat


for _part in ("nat", "bdy", "rob"):
    for _which in ("avg", "worst"):
        STATS.register(f"{_part}_{_which}")(_error_triple(_part, _which))


@STATS.register("gap")
def clean_minus_attack(run: RunDir, cell: Cell) -> Measured | None:
    """Clean accuracy minus accuracy under the cell's attack (BiLAW Table 6)."""
    clean, attacked = _attack(run, Cell(cell.row, cell.column, cell.run, cell.checkpoint, "clean")), _attack(run, cell)
    return None if clean is None or attacked is None else Measured(clean["acc"] - attacked["acc"], "gap")


@STATS.register("epoch_seconds")
def seconds_per_epoch(run: RunDir, cell: Cell) -> Measured | None:
    """Mean wall-clock training time per epoch (evaluation excluded), from the epoch records."""
    seconds = [r["train_seconds"] for r in run.records() if "train_seconds" in r]
    return Measured(mean(seconds), "seconds") if seconds else None


CONVERSIONS: dict[tuple[Kind, str], Callable[[float], float]] = {
    ("acc", "acc%"): lambda v: 100 * v,
    ("acc", "err%"): lambda v: 100 * (1 - v),
    ("err", "err%"): lambda v: 100 * v,
    ("err", "acc%"): lambda v: 100 * (1 - v),
    ("seconds", "s/epoch"): lambda v: v,
    ("seconds", "other:min/epoch"): lambda v: v / 60,
    ("gap", "other:clean-minus-PGD accuracy gap in percentage points"): lambda v: 100 * v,
}


def in_unit(measured: Measured, unit: str) -> float:
    convert = CONVERSIONS.get((measured.kind, unit))
    if convert is None:
        units = sorted(u for k, u in CONVERSIONS if k == measured.kind)
        raise ValueError(f"a {measured.kind} statistic cannot be shown in unit {unit!r}; it can be shown in {units}")
    return convert(measured.value)
