"""Each paper's headline comparisons as checkable statements over its tables (`tables/claims/<paper>.csv`).

A claim is "lhs op rhs" over two cells of one table, so a run at a reduced budget can still confirm or refute
the direction of a result even where the numbers themselves are far from the paper's. A claim whose cells are
not both measured is "not testable".
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.published import PAPERS, PUBLISHED_DIR

CLAIMS_DIR = PUBLISHED_DIR.parent / "claims"
COLUMNS = ["id", "table", "statement", "lhs_row", "lhs_column", "op", "rhs_row", "rhs_column"]
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    table: str
    statement: str
    lhs: tuple[str, str]  # (row, column) of the published table
    op: str
    rhs: tuple[str, str]

    def verdict(self, values: dict[tuple[str, str], float]) -> str:
        """'held', 'refuted' or 'not testable' (a cell is not measured) on one table's values."""
        left, right = values.get(self.lhs, math.nan), values.get(self.rhs, math.nan)
        if math.isnan(left) or math.isnan(right):
            return "not testable"
        return "held" if OPS[self.op](left, right) else "refuted"

    def text(self) -> str:
        return f"{self.statement} [{' / '.join(self.lhs)} {self.op} {' / '.join(self.rhs)}]"


def load_claims(paper: str, directory: Path = CLAIMS_DIR) -> list[Claim]:
    """The paper's claims, checked: known operators and unique ids (cells are checked against the tables
    by the tests, since a claim file is data that can drift from the published file)."""
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; claims exist for {', '.join(PAPERS)}")
    path = directory / f"{paper}.csv"
    if not path.exists():
        return []
    rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(rows.columns) != COLUMNS:
        raise ValueError(f"{path}: columns {list(rows.columns)}, expected {COLUMNS}")
    bad = sorted(set(rows["op"]) - set(OPS))
    if bad:
        raise ValueError(f"{path}: operators {bad}; allowed: {', '.join(OPS)}")
    repeated = sorted(rows["id"][rows["id"].duplicated()])
    if repeated:
        raise ValueError(f"{path}: repeated claim ids {repeated}")
    return [Claim(r.id, paper, r.table, r.statement, (r.lhs_row, r.lhs_column), r.op, (r.rhs_row, r.rhs_column))
            for r in rows.itertuples()]


def claims_for(paper: str, table: str) -> list[Claim]:
    return [claim for claim in load_claims(paper) if claim.table == table]
