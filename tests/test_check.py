"""Reproduction checks: tolerance verdicts per profile and per noise, a refuted claim failing the table, and
`bench check`'s exit status (the claims themselves: tests/test_claims.py)."""
import math

import pandas as pd
import pytest

from bench.cli import main
from bench.papers import EXPERIMENTS
from bench.experiments.check import TOLERANCE, check_table
from bench.published import load_published


def published_cells(experiment) -> pd.DataFrame:
    """The table's cells as `collect` returns them, with ours = the published value."""
    pub = load_published(experiment.paper)
    pub = pub[pub["table"] == experiment.table]
    return pd.DataFrame({"row": pub["row"], "column": pub["column"], "unit": pub["unit"], "ours": pub["value"],
                         "published": pub["value"]})


def test_tolerance_verdicts_per_profile():
    experiment = EXPERIMENTS.get("table1_bilaw")
    cells = published_cells(experiment)
    assert check_table(experiment, cells, "paper").verdict == "reproduced"
    off = cells.copy()
    off.loc[off.index[0], "ours"] += TOLERANCE["paper"] + 0.1
    result = check_table(experiment, off, "paper")
    assert result.verdict == "not reproduced" and len(result.outside) == 1
    assert result.outside[0][:2] == (off.iloc[0]["row"], off.iloc[0]["column"])
    assert check_table(experiment, off, "fast").verdict == "reproduced"  # within the looser indicative bound
    off.loc[off.index[1], "ours"] = math.nan
    assert check_table(experiment, off, "fast").verdict == "incomplete"


def test_a_refuted_claim_fails_the_table_at_any_profile(tmp_path, monkeypatch):
    experiment = EXPERIMENTS.get("table1_bilaw")
    cells = published_cells(experiment)
    row, col = "F-MNIST / AT", "Tiny-CNN / perturbation: ℓ∞ / ε = 0.1 / AA"
    claims = tmp_path / "bilaw.csv"
    claims.write_text("id,table,section,quote,statement,pick,lhs_rows,lhs_columns,rhs_rows,rhs_columns,measure,op,"
                      f"value,tol\nx,table1,4.1,A sentence.,BiLAW beats AT,each,F-MNIST / BiLAW(ours),{col},{row},,"
                      "points,>,0,\n")
    monkeypatch.setattr("bench.experiments.claims.CLAIMS_DIR", tmp_path)
    monkeypatch.setattr("bench.experiments.claims.load_claims.__defaults__", (tmp_path,))
    assert check_table(experiment, cells, "smoke").verdict == "reproduced"
    cells.loc[(cells["row"] == row) & (cells["column"] == col), "ours"] = 99.0
    result = check_table(experiment, cells, "smoke")
    assert result.verdict == "not reproduced" and result.claims[0][1] == "refuted"


def test_a_cell_within_its_noise_of_the_tolerance_is_not_judged():
    experiment = EXPERIMENTS.get("table1_bilaw")
    cells = published_cells(experiment)
    cells["ours_se"] = 0.1
    cells.loc[cells.index[0], "ours"] += TOLERANCE["paper"] + 0.5
    cells.loc[cells.index[0], "ours_se"] = 2.7  # AA on 300 images: ±5.4 reaches back inside the band
    result = check_table(experiment, cells, "paper")
    assert result.outside == [] and len(result.undecided) == 1
    assert result.verdict == "not distinguishable at this budget"
    cells.loc[cells.index[0], "ours_se"] = 0.1
    assert check_table(experiment, cells, "paper").verdict == "not reproduced"


def test_check_exit_status_gates_only_the_paper_profile(tmp_path, capsys):
    # table1_uiat: no cell of it is in the committed ledger, so with an empty run store it is incomplete
    assert main(["check", "table1_uiat", "--profile", "paper", "--runs-dir", str(tmp_path)]) == 3  # incomplete
    assert "table1_uiat [paper]: incomplete" in capsys.readouterr().out
    assert main(["check", "table1_uiat", "--profile", "fast", "--runs-dir", str(tmp_path)]) == 0
    assert main(["check", "table1_nope", "--runs-dir", str(tmp_path)]) == 2
