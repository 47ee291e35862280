"""Audit of the published tables: printed numbers that cannot all be true, or are implausible, found by the
rules of bench.audit.rules over `tables/published/<paper>.csv`. `bench check` leaves flagged cells out of
its cell verdicts (saying why) and rendered tables mark them; `python -m bench audit` prints every finding.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from bench.audit.roles import as_accuracy, column_role, rounding, row_group
from bench.audit.rules import RULES, Flag
from bench.published import PAPERS, PUBLISHED_DIR, load_published

__all__ = ["Flag", "RULES", "audit", "audit_cells", "flagged_cells", "parse_target"]


def audit_cells(cells: pd.DataFrame) -> list[Flag]:
    """Every rule's findings on one paper's cells: the columns `load_published` returns, plus `printed`, each
    value as printed (its decimals bound the rounding error)."""
    roles = [column_role(c) for c in cells["column"]]
    cells = cells.assign(
        group=[r.group for r in roles], metric=[r.metric for r in roles], aggregate=[r.aggregate for r in roles],
        acc=[as_accuracy(v, u) for v, u in zip(cells["value"], cells["unit"])],
        peers=[row_group(r) for r in cells["row"]], slack=[rounding(p) for p in cells["printed"]])
    cells["acc"] = cells["acc"].where(cells["metric"] != "gap")
    return [flag for name in RULES for flag in RULES.get(name).check(cells)]


@lru_cache(maxsize=None)  # the published files do not change while the bench runs; checks ask per table
def audit(paper: str, directory: Path = PUBLISHED_DIR) -> tuple[Flag, ...]:
    cells = load_published(paper, directory)
    printed = pd.read_csv(directory / f"{paper}.csv", dtype=str, keep_default_na=False)["value"]
    return tuple(audit_cells(cells.assign(printed=printed.values)))


def flagged_cells(paper: str, table: str, directory: Path = PUBLISHED_DIR) -> dict[tuple[str, str], list[Flag]]:
    """(row, column) → the findings that implicate the cell, for one published table."""
    out: dict[tuple[str, str], list[Flag]] = {}
    for flag in audit(paper, directory):
        if flag.table == table:
            for cell in dict.fromkeys(flag.cells):
                out.setdefault(cell, []).append(flag)
    return out


def excluded(flags: list[Flag]) -> bool:
    """Whether a cell with these findings is left out of cell verdicts (see bench.audit.rules)."""
    return any(RULES.get(flag.rule).excludes for flag in flags)


def parse_target(target: str) -> tuple[str, str | None]:
    """'bilaw' → ('bilaw', None); 'table1_bilaw' → ('bilaw', 'table1'). Refuses anything else."""
    if target in PAPERS:
        return target, None
    table, _, paper = target.partition("_")
    if paper in PAPERS and table.startswith("table") and table[5:].isdigit():
        return paper, table
    raise ValueError(f"audit target {target!r}: give a paper ({', '.join(PAPERS)}) or a table id such as "
                     "table1_bilaw")
