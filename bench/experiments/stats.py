"""The statistics a table cell can show, read from a finished run's files, and their conversion to the
unit of the published cell (accuracy or error in %, seconds or minutes per epoch, accuracy gaps in points).

A statistic reads a finished run through its evaluated view (bench.eval_store.EvaluatedRun, or a ledger run):
`checkpoint(name)` gives the stored evaluations of the checkpoint the table's selection rule names, `records()`
the epoch records. It returns a `Measured` (value, what kind of quantity it is, and its standard error) or None
when the run was not evaluated so (say, AutoAttack not computed yet); the unit of the published cell decides how
it is shown.

Uncertainty. An accuracy measured on n test images is a binomial proportion: its standard error is
sqrt(p(1-p)/n), with the Agresti-Coull adjustment p = (k+2)/(n+4) so that 0% or 100% on a few images is not
reported as exact. Per-class statistics count the images of one class (n / classes; the test sets are
balanced), the worst-20% mean the images of those classes, and a clean-minus-attack gap is itself the
proportion of images the attack flips (same images). Over seeds, the mean carries the seeds' spread
(std/sqrt(k)) plus the test-set sampling error, which does not average out because every seed is evaluated on
the same images. Two cells from different runs are independent: the error of their difference adds in
quadrature. A judgement (`judge`) is made only when the ±Z·se interval of the measured quantity lies wholly
inside (held) or wholly outside (refuted) the set of values the claim allows; otherwise it is "not
distinguishable at this budget".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import mean, stdev
from typing import Any, Callable, Literal

from bench.experiments.base import Cell
from bench.registry import Registry

Kind = Literal["acc", "err", "seconds", "gap"]


Z = 2.0  # standard errors a difference must clear before it is judged (about a 95% interval)
NOT_DISTINGUISHABLE = "not distinguishable at this budget"


@dataclass(frozen=True)
class Measured:
    value: float
    kind: Kind  # acc / err / gap: fractions of the test set; seconds: wall-clock
    se: float = math.nan  # standard error in the same kind; NaN where nothing says how noisy it is


def binomial_se(p: float, n: int) -> float:
    """Standard error of a proportion p measured on n trials (Agresti-Coull: never 0 at p = 0 or 1)."""
    if n < 1:
        raise ValueError(f"a proportion needs n >= 1 trials; got n={n}")
    adjusted = (p * n + 2) / (n + 4)
    return math.sqrt(adjusted * (1 - adjusted) / (n + 4))


def seeds_se(values: list[float], ses: list[float]) -> float:
    """Standard error of the mean of per-seed values evaluated on the same test images: the seeds' spread
    (std/sqrt(k), absent for one seed) plus the test-set sampling error (the mean of the per-seed errors)."""
    if not values:
        return math.nan
    sampling = mean(ses) if ses else math.nan
    if len(values) < 2:
        return sampling
    spread = stdev(values) ** 2 / len(values)
    return math.sqrt(spread + (0.0 if math.isnan(sampling) else sampling ** 2))


def difference(a: float, b: float, se_a: float, se_b: float, measure: str = "points") -> tuple[float, float]:
    """a − b in points, or 100·(a − b)/b in percent of b ('relative'), with its standard error (independent
    cells; the delta method for the ratio)."""
    if measure == "points":
        return a - b, math.hypot(se_a, se_b)
    if measure == "relative":
        if b == 0:
            raise ValueError(f"a relative difference needs a non-zero reference; got {b}")
        return 100 * (a - b) / b, 100 * math.hypot(se_a / b, a * se_b / b ** 2)
    raise ValueError(f"measure {measure!r} unknown; choose 'points' or 'relative'")


@dataclass(frozen=True)
class Accepted:
    """The values a claim allows for a measured quantity: (low, high), each end open or closed."""
    low: float = -math.inf
    high: float = math.inf
    closed: bool = False  # whether the finite ends belong to the set (">=", "<=", "about")

    def contains(self, x: float) -> bool:
        return (self.low <= x <= self.high) if self.closed else (self.low < x < self.high)


def judge(d: float, se: float, accepted: Accepted, z: float = Z) -> str:
    """'held' if d ± z·se lies wholly in the accepted set, 'refuted' if wholly outside it, else not
    distinguishable. se NaN (unknown) or 0 (published numbers) judges d itself."""
    half = 0.0 if math.isnan(se) else z * se
    lo, hi = d - half, d + half
    if accepted.contains(lo) and accepted.contains(hi):
        return "held"
    overlaps = (hi > accepted.low if not accepted.closed else hi >= accepted.low) and \
               (lo < accepted.high if not accepted.closed else lo <= accepted.high)
    return NOT_DISTINGUISHABLE if overlaps else "refuted"


Stat = Callable[[Any, Cell], "Measured | None"]  # (evaluated run, cell)
STATS: Registry[Stat] = Registry("cell statistic")


def _attack(run: Any, cell: Cell) -> dict | None:
    checkpoint = run.checkpoint(cell.checkpoint)
    return None if checkpoint is None else checkpoint["attacks"].get(cell.attack)


def _images_of(run: Any, n: int | None, classes: Callable[[int], int] | None) -> int | None:
    """Of n evaluated images, those of `classes(num_classes)` classes (balanced test sets); None: all n."""
    num_classes = run.num_classes
    if n is None or classes is None or not num_classes:
        return n
    return max(1, round(n * classes(num_classes) / num_classes))


def _attack_field(field: str, classes: Callable[[int], int] | None) -> Stat:
    def stat(run: Any, cell: Cell) -> Measured | None:
        ev = _attack(run, cell)
        if ev is None or ev.get(field) is None:
            return None
        n = _images_of(run, ev.get("n"), classes)
        return Measured(ev[field], "acc", math.nan if n is None else binomial_se(ev[field], n))
    return stat


STATS.register("acc")(_attack_field("acc", None))  # overall accuracy under the cell's attack
STATS.register("worst")(_attack_field("worst_class_acc", lambda k: 1))  # accuracy of the worst class
STATS.register("worst20")(_attack_field("worst20_mean", lambda k: max(1, round(0.2 * k))))  # CFA Table 4


def _error_triple(part: str, which: str) -> Stat:
    """FRL/CAAT natural / boundary / robust error, average or worst class (PGD-20 is the attack)."""
    def stat(run: Any, cell: Cell) -> Measured | None:
        checkpoint = run.checkpoint(cell.checkpoint)
        if checkpoint is None or "error_triple" not in checkpoint:
            return None
        triple = checkpoint["error_triple"]
        value = triple[part][which]
        n = _images_of(run, triple.get("n"), (lambda k: 1) if which == "worst" else None)
        return Measured(value, "err", math.nan if n is None else binomial_se(value, n))
    return stat


for _part in ("nat", "bdy", "rob"):
    for _which in ("avg", "worst"):
        STATS.register(f"{_part}_{_which}")(_error_triple(_part, _which))


@STATS.register("gap")
def clean_minus_attack(run: Any, cell: Cell) -> Measured | None:
    """Clean accuracy minus accuracy under the cell's attack (BiLAW Table 6)."""
    clean, attacked = _attack(run, Cell(cell.row, cell.column, cell.run, cell.checkpoint, "clean")), _attack(run, cell)
    if clean is None or attacked is None:
        return None
    gap, n = clean["acc"] - attacked["acc"], attacked.get("n")  # the share of images the attack flips
    return Measured(gap, "gap", math.nan if n is None else binomial_se(max(gap, 0.0), n))


@STATS.register("epoch_seconds")
def seconds_per_epoch(run: Any, cell: Cell) -> Measured | None:
    """Mean wall-clock training time per epoch (evaluation excluded), from the epoch records."""
    seconds = [r["train_seconds"] for r in run.records() if "train_seconds" in r]
    if not seconds:
        return None
    return Measured(mean(seconds), "seconds", stdev(seconds) / math.sqrt(len(seconds)) if len(seconds) > 1 else math.nan)


CONVERSIONS: dict[tuple[Kind, str], Callable[[float], float]] = {
    ("acc", "acc%"): lambda v: 100 * v,
    ("acc", "err%"): lambda v: 100 * (1 - v),
    ("err", "err%"): lambda v: 100 * v,
    ("err", "acc%"): lambda v: 100 * (1 - v),
    ("seconds", "s/epoch"): lambda v: v,
    ("seconds", "other:min/epoch"): lambda v: v / 60,
    ("gap", "other:clean-minus-PGD accuracy gap in percentage points"): lambda v: 100 * v,
}


def _conversion(measured: Measured, unit: str) -> Callable[[float], float]:
    convert = CONVERSIONS.get((measured.kind, unit))
    if convert is None:
        units = sorted(u for k, u in CONVERSIONS if k == measured.kind)
        raise ValueError(f"a {measured.kind} statistic cannot be shown in unit {unit!r}; it can be shown in {units}")
    return convert


def in_unit(measured: Measured, unit: str) -> float:
    return _conversion(measured, unit)(measured.value)


def se_in_unit(measured: Measured, unit: str) -> float:
    """The standard error in the published unit (every conversion is affine: the slope scales it)."""
    convert = _conversion(measured, unit)
    return abs(convert(measured.se) - convert(0.0))
