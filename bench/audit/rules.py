"""The audit's rules: each a small function over one paper's published cells that returns the findings it
makes. Cells arrive with their roles (bench.audit.roles): `group`, `metric`, `aggregate`, `acc` (the value as
an accuracy in %, NaN for times and gaps), `peers` (the row group) and `slack` (half a unit in the last
printed decimal, so rounding alone never fires a rule).

A rule's `excludes` says whether a flagged cell is left out of cell verdicts: it is where the printed numbers
cannot all be true (an identity or ordering is broken) or one is implausible against its peers. A row
repeated in another table under another name is shown but still judged: an ablation's reference row
reprints the main table's model.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from statistics import median
from typing import Callable, Iterator

import pandas as pd

from bench.audit.roles import ATTACKED, adversarially_trained, method
from bench.registry import Registry

Cell = tuple[str, str]  # (row, column) as in tables/published/<paper>.csv
Finding = tuple[str, tuple[Cell, ...], str]  # what a rule yields: table, cells, detail (a Flag without its rule)


@dataclass(frozen=True)
class Flag:
    rule: str
    table: str
    cells: tuple[Cell, ...]  # every cell the finding implicates (it cannot tell which one is wrong)
    detail: str  # the numbers that fire it

    def line(self) -> str:
        where = "; ".join(f"{row} | {column}" for row, column in self.cells)
        return f"{self.table} [{self.rule}] {where}: {self.detail}"


@dataclass(frozen=True)
class Rule:
    check: Callable[[pd.DataFrame], list[Flag]]
    excludes: bool  # flagged cells are left out of cell verdicts (still shown)
    why: str  # one line, printed in the audit's legend


RULES: Registry[Rule] = Registry("audit rule")


def rule(name: str, excludes: bool = True) -> Callable[[Callable[[pd.DataFrame], Iterator[Finding]]], Rule]:
    def add(fn: Callable[[pd.DataFrame], Iterator[Finding]]) -> Rule:
        def check(cells: pd.DataFrame) -> list[Flag]:
            return [Flag(name, *finding) for finding in fn(cells)]
        return RULES.register(name)(Rule(check, excludes, " ".join((fn.__doc__ or "").split())))
    return add


OUTLIER_Z = 5.0  # robust z-score (median / MAD of the peers) beyond which a value is implausible
OUTLIER_FLOOR = 2.0  # points: the smallest spread assumed, so a tight column does not flag a few points' lead
MIN_PEERS = 4


def _settings(cells: pd.DataFrame) -> dict[tuple[str, str, str], dict[tuple[str, str], pd.Series]]:
    """(table, row, column group) → {(metric, aggregate): cell}: one model's numbers in one setting."""
    known = cells[cells["metric"].notna()]
    return {key: {(c["metric"], c["aggregate"]): c for _, c in setting.iterrows()}
            for key, setting in known.groupby(["table", "row", "group"], sort=False)}


def _exceeds(high: pd.Series, low: pd.Series) -> bool:
    """high's accuracy > low's beyond what rounding of both printed values allows."""
    return high["acc"] - low["acc"] > high["slack"] + low["slack"] + 1e-9


def _cells(*cells: pd.Series) -> tuple[Cell, ...]:
    return tuple((c["row"], c["column"]) for c in cells)


@rule("triple_average_sum")
def triple_average_sum(cells: pd.DataFrame) -> Iterator[Finding]:
    """FRL/CAAT error triple: average robust error = average natural + average boundary error (the decomposition of
    Zhang et al. 2019 that CAAT §1 and FRL use; boundary error counts correctly classified points only)."""
    for (table, _, _), s in _settings(cells).items():
        parts = [s.get((m, "avg")) for m in ("nat", "bdy", "rob")]
        if any(p is None for p in parts):
            continue
        nat, bdy, rob = parts
        if abs(nat["value"] + bdy["value"] - rob["value"]) > sum(p["slack"] for p in parts) + 1e-9:
            yield table, _cells(nat, bdy, rob), (f"nat {nat['value']:g} + bdy {bdy['value']:g} = "
                                                 f"{nat['value'] + bdy['value']:.2f} ≠ rob {rob['value']:g}")


@rule("triple_worst_bound")
def triple_worst_bound(cells: pd.DataFrame) -> Iterator[Finding]:
    """Per class robust = natural + boundary error, so worst robust ≤ worst natural + worst boundary."""
    for (table, _, _), s in _settings(cells).items():
        parts = [s.get((m, "worst")) for m in ("nat", "bdy", "rob")]
        if any(p is None for p in parts):
            continue
        nat, bdy, rob = parts
        if rob["value"] - nat["value"] - bdy["value"] > sum(p["slack"] for p in parts) + 1e-9:
            yield table, _cells(nat, bdy, rob), (f"worst rob {rob['value']:g} > worst nat {nat['value']:g} + "
                                                 f"worst bdy {bdy['value']:g} = {nat['value'] + bdy['value']:.2f}")


@rule("gap_is_clean_minus_attacked")
def gap_is_clean_minus_attacked(cells: pd.DataFrame) -> Iterator[Finding]:
    """A gap column equals clean − attacked accuracy of the same row."""
    for (table, _, _), s in _settings(cells).items():
        gap, clean, attacked = s.get(("gap", "avg")), s.get(("clean", "avg")), s.get(("pgd", "avg"))
        if gap is None or clean is None or attacked is None:
            continue
        if abs(clean["value"] - attacked["value"] - gap["value"]) > gap["slack"] + clean["slack"] + attacked["slack"] + 1e-9:
            yield table, _cells(clean, attacked, gap), (f"clean {clean['value']:g} − pgd {attacked['value']:g} = "
                                                        f"{clean['value'] - attacked['value']:.2f} ≠ gap {gap['value']:g}")


@rule("attacked_at_most_clean")
def attacked_at_most_clean(cells: pd.DataFrame) -> Iterator[Finding]:
    """Accuracy under attack ≤ clean accuracy of the same model, class average or worst class."""
    for (table, _, _), s in _settings(cells).items():
        for (metric, aggregate), attacked in s.items():
            clean = s.get(("clean" if metric != "rob" else "nat", aggregate))
            if metric in ATTACKED and clean is not None and _exceeds(attacked, clean):
                yield table, _cells(clean, attacked), (f"{metric} accuracy {attacked['acc']:g} > clean "
                                                       f"{clean['acc']:g} ({aggregate})")


@rule("autoattack_at_most_pgd_cw")
def autoattack_at_most_pgd_cw(cells: pd.DataFrame) -> Iterator[Finding]:
    """AutoAttack accuracy ≤ PGD and CW accuracy of the same model (AA is the stronger attack)."""
    for (table, _, _), s in _settings(cells).items():
        for aggregate in ("avg", "worst", "worst20"):
            aa = s.get(("aa", aggregate))
            for weaker in ("pgd", "cw"):
                other = s.get((weaker, aggregate))
                if aa is not None and other is not None and _exceeds(aa, other):
                    yield table, _cells(other, aa), f"AA {aa['acc']:g} > {weaker.upper()} {other['acc']:g} ({aggregate})"


@rule("worst_at_most_average")
def worst_at_most_average(cells: pd.DataFrame) -> Iterator[Finding]:
    """Worst-class accuracy ≤ mean of the worst 20% of classes ≤ class average (errors the other way)."""
    for (table, _, _), s in _settings(cells).items():
        for metric in {m for m, _ in s} - {"gap"}:
            chain = [s[(metric, a)] for a in ("worst", "worst20", "avg") if (metric, a) in s]
            for low, high in combinations(chain, 2):
                if _exceeds(low, high):
                    yield table, _cells(low, high), (f"{metric} {low['aggregate']} {low['value']:g} vs "
                                                     f"{high['aggregate']} {high['value']:g} ({low['unit']})")


@rule("peer_outlier")
def peer_outlier(cells: pd.DataFrame) -> Iterator[Finding]:
    """A value far outside its column's peers (same table, dataset and column): robust z-score > 5,
    the spread being 1.4826·MAD of the peers but at least 2 points."""
    judged = cells[cells["acc"].notna() & cells["metric"].notna()]
    for (table, _, column), peers in judged.groupby(["table", "peers", "column"], sort=False):
        if peers["metric"].iloc[0] in ATTACKED:  # a plainly trained row is not a peer under attack
            peers = peers[[adversarially_trained(r) for r in peers["row"]]]
        for i, cell in peers.iterrows():
            others = peers.drop(index=i)["value"].tolist()
            if len(others) < MIN_PEERS:
                continue
            centre = median(others)
            spread = max(1.4826 * median(abs(v - centre) for v in others), OUTLIER_FLOOR)
            if abs(cell["value"] - centre) > OUTLIER_Z * spread:
                yield table, _cells(cell), (f"{cell['value']:g} where its {len(others)} peers span "
                                            f"{min(others):g}–{max(others):g} (median {centre:g}; "
                                            f"z = {(cell['value'] - centre) / spread:+.1f})")


def _same_numbers(a: dict, b: dict) -> list[tuple[str, str]] | None:
    """The (metric, aggregate) keys two settings share, if ≥ 2, covering the smaller one, and all equal."""
    shared = sorted(set(a) & set(b))
    if len(shared) < 2 or len(shared) < min(len(a), len(b)):
        return None
    return shared if all(a[k]["value"] == b[k]["value"] for k in shared) else None


def _numbers(unit: dict, keys: list[tuple[str, str]]) -> str:
    return ", ".join(f"{metric} {unit[(metric, aggregate)]['value']:g}" + ("" if aggregate == "avg" else f" ({aggregate})")
                     for metric, aggregate in keys)


@rule("repeated_row_in_table")
def repeated_row_in_table(cells: pd.DataFrame) -> Iterator[Finding]:
    """Two rows of one table print the same numbers in a column group: one of them is a copy."""
    units = {key: unit for key, unit in _settings(cells).items() if len(unit) >= 2}
    for (ka, a), (kb, b) in combinations(units.items(), 2):
        if ka[0] == kb[0] and ka[2] == kb[2] and ka[1] != kb[1] and (shared := _same_numbers(a, b)):
            yield ka[0], _cells(*(a[k] for k in shared), *(b[k] for k in shared)), (
                f"'{ka[1]}' and '{kb[1]}' both print {_numbers(a, shared)}"
                f"{'' if not ka[2] else f' under {ka[2]}'}")


@rule("repeated_row_across_tables", excludes=False)
def repeated_row_across_tables(cells: pd.DataFrame) -> Iterator[Finding]:
    """A row of one table reprinted in another under another name (same metrics, same numbers)."""
    units = {key: unit for key, unit in _settings(cells).items() if len(unit) >= 2}
    for (ka, a), (kb, b) in combinations(units.items(), 2):
        if ka[0] != kb[0] and method(ka[1]) != method(kb[1]) and (shared := _same_numbers(a, b)):
            numbers = _numbers(a, shared)
            yield ka[0], _cells(*(a[k] for k in shared)), f"same numbers as {kb[0]} '{kb[1]}' ({numbers})"
            yield kb[0], _cells(*(b[k] for k in shared)), f"same numbers as {ka[0]} '{ka[1]}' ({numbers})"
