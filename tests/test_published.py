"""The transcribed published numbers load, are unique per cell, numeric, and carry known units."""
import pandas as pd
import pytest

from bench.published import COLUMNS, PAPERS, load_published


@pytest.mark.parametrize("paper", PAPERS)
def test_every_paper_has_its_tables_transcribed(paper):
    cells = load_published(paper)
    assert len(cells) > 50 and cells["value"].notna().all()
    assert set(cells["table"]) >= {"table1", "table2"}


def test_known_cells_are_where_the_papers_print_them():
    caat = load_published("caat").set_index(["table", "row", "column"])["value"]
    assert caat[("table1", "PGD Adv. Training", "Avg. Nat.")] == 15.5
    cfa = load_published("cfa").set_index(["table", "row", "column"])["value"]
    assert cfa[("table1", "AT", "Best / Clean Accuracy / Avg.")] == 82.3


def test_a_malformed_file_is_refused_with_the_reason(tmp_path):
    row = dict(zip(COLUMNS, ["cfa", "table1", "AT", "Avg.", "8x", "", "percent", ""]))
    pd.DataFrame([row, row]).to_csv(tmp_path / "cfa.csv", index=False)
    with pytest.raises(ValueError, match=r"repeated cells.*units \['percent'\].*non-numeric value"):
        load_published("cfa", tmp_path)
    with pytest.raises(ValueError, match="unknown paper 'frl'"):
        load_published("frl")
