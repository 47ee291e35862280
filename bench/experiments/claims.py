"""Each paper's headline statements as checkable claims over its tables (`tables/claims/<paper>.csv`).

A claim keeps the sentence it encodes (`quote`, verbatim, with its `section`) and says what it measures: for
every comparison the sentence makes (a part), d = lhs − rhs in points of the cells' unit (`measure` points) or
100·(lhs − rhs)/rhs in percent of the rhs (`measure` relative), and which d it allows (`op` `value`, or
`~ value ± tol` for a stated magnitude; a direction-only claim is `> 0` or `< 0`). Which one a magnitude means
is decided per sentence and said in `statement`.

Rows and columns may list several names separated by "; " (columns pair up, lhs with rhs; an empty
rhs_columns repeats lhs_columns). `pick` says how the lists make parts:
  each  every lhs row against every rhs row in every column pair: a conjunction, all must hold;
  pairs the i-th lhs row against the i-th rhs row ("CFA helps each method": AT + CFA vs AT, ...), all columns;
  best  per column pair, the strongest lhs row against the strongest rhs row ("the best baseline"), the
        strongest being chosen on the values judged (higher accuracy, lower error or time);
  max   every part as for `each`, and the largest d is judged ("improves ... by up to 6%").

Every claim is first judged on the published numbers: one they refute is "contradicted by the paper's own
table" (`claims_contradicted_by_published`), shown by `check` and left out of its verdict. On our numbers a
part is judged with the uncertainty of its cells (bench.experiments.stats.judge): held, refuted, not
distinguishable at this budget, or not testable (a cell is not measured).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from pathlib import Path
from typing import Mapping

import pandas as pd

from bench.experiments.stats import NOT_DISTINGUISHABLE, Accepted, difference, judge
from bench.published import PAPERS, PUBLISHED_DIR, load_published

CLAIMS_DIR = PUBLISHED_DIR.parent / "claims"
COLUMNS = ["id", "table", "section", "quote", "statement", "pick", "lhs_rows", "lhs_columns", "rhs_rows",
           "rhs_columns", "measure", "op", "value", "tol"]
PICKS = ("each", "pairs", "best", "max")
MEASURES = ("points", "relative")
OPS = (">", ">=", "<", "<=", "~")
HIGHER_IS_BETTER = {"acc%": True, "err%": False, "s/epoch": False, "other:min/epoch": False}
CONTRADICTED = "contradicted by the paper's own table"
SEP = "; "

Key = tuple[str, str]  # (row, column) of one table


def accepted(op: str, value: float, tol: float) -> Accepted:
    """The set of d a claim allows."""
    return {">": Accepted(low=value), ">=": Accepted(low=value, closed=True), "<": Accepted(high=value),
            "<=": Accepted(high=value, closed=True),
            "~": Accepted(value - tol, value + tol, closed=True)}[op]


@dataclass(frozen=True)
class PartResult:
    lhs: Key
    rhs: Key
    d: float
    se: float
    verdict: str

    def text(self) -> str:
        se = "" if math.isnan(self.se) or self.se == 0 else f" ± {self.se:.1f}"
        return f"{' / '.join(self.lhs)} − {' / '.join(self.rhs)} = {self.d:+.2f}{se}"


@dataclass(frozen=True)
class Judgement:
    verdict: str
    parts: tuple[PartResult, ...]

    def worst(self) -> PartResult | None:
        """The part that decided the verdict (the first with the claim's verdict)."""
        return next((p for p in self.parts if p.verdict == self.verdict), None)


def combine(verdicts: list[str]) -> str:
    """A conjunction: refuted if any part is; else not testable, else not distinguishable, else held."""
    for verdict in ("refuted", "not testable", NOT_DISTINGUISHABLE):
        if verdict in verdicts:
            return verdict
    return "held"


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    table: str
    section: str
    quote: str
    statement: str
    pick: str
    lhs_rows: tuple[str, ...]
    lhs_columns: tuple[str, ...]
    rhs_rows: tuple[str, ...]
    rhs_columns: tuple[str, ...]
    measure: str
    op: str
    value: float
    tol: float
    units: tuple[str, ...]  # the published unit of each column pair (decides "strongest" for pick best)

    def cells(self) -> set[Key]:
        return ({(r, c) for r in self.lhs_rows for c in self.lhs_columns}
                | {(r, c) for r in self.rhs_rows for c in self.rhs_columns})

    def _strongest(self, rows: tuple[str, ...], column: str, unit: str, values: Mapping[Key, float]) -> str | None:
        measured = [(values.get((r, column), math.nan), r) for r in rows]
        if any(math.isnan(v) for v, _ in measured):
            return None
        sign = 1 if HIGHER_IS_BETTER[unit] else -1
        return max(measured, key=lambda vr: sign * vr[0])[1]

    def parts(self, values: Mapping[Key, float]) -> list[tuple[Key, Key] | None]:
        """The comparisons the claim makes on these values (None: 'best' cannot pick, a cell is missing)."""
        pairs = list(zip(self.lhs_columns, self.rhs_columns, self.units))
        if self.pick == "best":
            out = []
            for lc, rc, unit in pairs:
                lr, rr = (self._strongest(self.lhs_rows, lc, unit, values),
                          self._strongest(self.rhs_rows, rc, unit, values))
                out.append(None if lr is None or rr is None else ((lr, lc), (rr, rc)))
            return out
        rows = zip(self.lhs_rows, self.rhs_rows) if self.pick == "pairs" else product(self.lhs_rows, self.rhs_rows)
        return [((lr, lc), (rr, rc)) for (lc, rc, _), (lr, rr) in product(pairs, list(rows)) if (lr, lc) != (rr, rc)]

    def judge(self, values: Mapping[Key, float], ses: Mapping[Key, float] | None = None) -> Judgement:
        """The verdict on one table's values with their standard errors (none: exact, as published)."""
        allowed = accepted(self.op, self.value, self.tol)
        results: list[PartResult] = []
        untestable = False
        for part in self.parts(values):
            if part is None:
                untestable = True
                continue
            lhs, rhs = part
            a, b = values.get(lhs, math.nan), values.get(rhs, math.nan)
            if math.isnan(a) or math.isnan(b):
                untestable = True
                continue
            se_a, se_b = ((ses or {}).get(k, 0.0) for k in (lhs, rhs))
            d, se = difference(a, b, 0.0 if math.isnan(se_a) else se_a, 0.0 if math.isnan(se_b) else se_b,
                               self.measure)
            results.append(PartResult(lhs, rhs, d, se, judge(d, se, allowed)))
        if untestable:
            return Judgement("not testable", tuple(results))
        if self.pick == "max":
            top = max(results, key=lambda p: p.d)
            return Judgement(top.verdict, (top,))
        return Judgement(combine([p.verdict for p in results]), tuple(results))

    def verdict(self, values: Mapping[Key, float], ses: Mapping[Key, float] | None = None) -> str:
        return self.judge(values, ses).verdict

    def requirement(self) -> str:
        what = "lhs − rhs" if self.measure == "points" else "(lhs − rhs)/rhs"
        unit = "points" if self.measure == "points" else "%"
        bound = f"{self.value:g} ± {self.tol:g}" if self.op == "~" else f"{self.value:g}"
        return f"{self.pick}: {what} {self.op} {bound} {unit}"

    def text(self) -> str:
        return f"{self.statement} [{self.requirement()}]"


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(SEP.strip()) if part.strip())


@lru_cache(maxsize=None)
def _units(paper: str) -> dict[tuple[str, str, str], str]:
    cells = load_published(paper)
    return {(t, r, c): u for t, r, c, u in zip(cells["table"], cells["row"], cells["column"], cells["unit"])}


def _claim(paper: str, r, path: Path) -> Claim:
    where = f"{path}: claim {r.id!r}"
    if r.pick not in PICKS:
        raise ValueError(f"{where}: pick {r.pick!r}; allowed: {', '.join(PICKS)}")
    if r.measure not in MEASURES:
        raise ValueError(f"{where}: measure {r.measure!r}; allowed: {', '.join(MEASURES)}")
    if r.op not in OPS:
        raise ValueError(f"{where}: operator {r.op!r}; allowed: {', '.join(OPS)}")
    try:
        value, tol = float(r.value), float(r.tol or 0)
    except ValueError:
        raise ValueError(f"{where}: value {r.value!r} and tol {r.tol!r} must be numbers") from None
    if (r.op == "~") != (tol > 0):
        raise ValueError(f"{where}: a tolerance > 0 goes with '~' and only with it; got op {r.op!r}, tol {r.tol!r}")
    if not r.quote or not r.section:
        raise ValueError(f"{where}: every claim quotes its sentence and names its section")
    lhs_columns = _split(r.lhs_columns)
    rhs_columns = _split(r.rhs_columns) or lhs_columns
    if len(lhs_columns) != len(rhs_columns):
        raise ValueError(f"{where}: {len(lhs_columns)} lhs columns but {len(rhs_columns)} rhs columns")
    lhs_rows, rhs_rows = _split(r.lhs_rows), _split(r.rhs_rows)
    if r.pick == "pairs" and len(lhs_rows) != len(rhs_rows):
        raise ValueError(f"{where}: pick 'pairs' needs as many lhs as rhs rows; got {len(lhs_rows)} and {len(rhs_rows)}")
    units = _units(paper)
    missing = sorted({(row, col) for rows, cols in ((lhs_rows, lhs_columns), (rhs_rows, rhs_columns))
                      for row in rows for col in cols if (r.table, row, col) not in units})
    if missing:
        raise ValueError(f"{where}: cells not in the published {r.table}: {missing[:3]}")
    pair_units = tuple(units[(r.table, lhs_rows[0], lc)] for lc in lhs_columns)
    if r.pick == "best" and any(u not in HIGHER_IS_BETTER for u in pair_units):
        raise ValueError(f"{where}: pick 'best' needs units where better is defined ({', '.join(HIGHER_IS_BETTER)})"
                         f"; got {sorted(set(pair_units))}")
    return Claim(r.id, paper, r.table, r.section, r.quote, r.statement, r.pick, lhs_rows, lhs_columns, rhs_rows,
                 rhs_columns, r.measure, r.op, value, tol, pair_units)


def load_claims(paper: str, directory: Path = CLAIMS_DIR) -> list[Claim]:
    """The paper's claims, checked: known picks, measures and operators, unique ids, cells that exist in the
    published tables."""
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; claims exist for {', '.join(PAPERS)}")
    path = directory / f"{paper}.csv"
    if not path.exists():
        return []
    rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(rows.columns) != COLUMNS:
        raise ValueError(f"{path}: columns {list(rows.columns)}, expected {COLUMNS}")
    repeated = sorted(rows["id"][rows["id"].duplicated()])
    if repeated:
        raise ValueError(f"{path}: repeated claim ids {repeated}")
    return [_claim(paper, r, path) for r in rows.itertuples()]


def claims_for(paper: str, table: str) -> list[Claim]:
    return [claim for claim in load_claims(paper) if claim.table == table]


def published_values(paper: str, table: str) -> dict[Key, float]:
    cells = load_published(paper)
    cells = cells[cells["table"] == table]
    return {(r, c): v for r, c, v in zip(cells["row"], cells["column"], cells["value"])}


def contradicted(claims: list[Claim], published: Mapping[str, Mapping[Key, float]]) -> list[tuple[Claim, Judgement]]:
    """The claims the published numbers (`published[table]`, exact) refute, with the parts that do."""
    out = []
    for claim in claims:
        judgement = claim.judge(published[claim.table])
        if judgement.verdict == "refuted":
            out.append((claim, judgement))
    return out


def claims_contradicted_by_published(paper: str) -> list[tuple[Claim, Judgement]]:
    """The paper's claims that its own tables contradict, each with the refuting parts and their numbers."""
    claims = load_claims(paper)
    tables = {claim.table: published_values(paper, claim.table) for claim in claims}
    return contradicted(claims, tables)
