"""The papers' published numbers, as transcribed into `tables/published/<paper>.csv`.

One long-format row per table cell: paper, table, row, column (header paths joined by " / "), value as
printed, its ± if printed, unit (acc%, err%, s/epoch, ... or "other:<what>") and a note where the extracted
text was ambiguous. Tables and checks read these files; nothing here is ever edited by a run.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

PUBLISHED_DIR = Path(__file__).resolve().parent.parent / "tables" / "published"
COLUMNS = ["paper", "table", "row", "column", "value", "std", "unit", "note"]
UNITS = ("acc%", "err%", "s/epoch", "min", "hours", "ratio", "count")
PAPERS = ("caat", "cfa", "uiat", "bilaw")


def load_published(paper: str, directory: Path = PUBLISHED_DIR) -> pd.DataFrame:
    """The paper's cells with `value` and `std` as floats (std NaN where none was printed), checked."""
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; published numbers exist for {', '.join(PAPERS)}")
    path = directory / f"{paper}.csv"
    cells = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(cells.columns) != COLUMNS:
        raise ValueError(f"{path}: columns {list(cells.columns)}, expected {COLUMNS}")
    problems = []
    if (cells["paper"] != paper).any():
        problems.append(f"rows of other papers: {sorted(set(cells['paper']) - {paper})}")
    duplicated = cells[cells.duplicated(["table", "row", "column"], keep=False)]
    if len(duplicated):
        problems.append(f"repeated cells: {duplicated[['table', 'row', 'column']].values.tolist()[:5]}")
    bad_units = sorted(u for u in set(cells["unit"]) if u not in UNITS and not u.startswith("other:"))
    if bad_units:
        problems.append(f"units {bad_units} (allowed: {', '.join(UNITS)} or other:<what>)")
    for field in ("value", "std"):  # a value is required; a std only where one was printed
        printed = cells[field] != ""
        numbers = pd.to_numeric(cells[field].where(printed, None), errors="coerce")
        wrong = cells[numbers.isna() & (printed | (field == "value"))]
        if len(wrong):
            problems.append(f"non-numeric {field}: {wrong[['table', 'row', 'column', field]].values.tolist()[:5]}")
        cells[field] = numbers
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return cells
