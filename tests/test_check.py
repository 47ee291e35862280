"""Reproduction checks: claims as data (they hold on the published numbers, and are judged on constructed
ones), tolerance verdicts per profile, and `bench check`'s exit status."""
import math

import pandas as pd
import pytest

from bench.cli import main
from bench.experiments import EXPERIMENTS
from bench.experiments.check import TOLERANCE, check_table
from bench.experiments.claims import Claim, load_claims
from bench.published import PAPERS, load_published


def published_cells(experiment) -> pd.DataFrame:
    """The table's cells as `collect` returns them, with ours = the published value."""
    pub = load_published(experiment.paper)
    pub = pub[pub["table"] == experiment.table]
    return pd.DataFrame({"row": pub["row"], "column": pub["column"], "unit": pub["unit"], "ours": pub["value"],
                         "published": pub["value"]})


@pytest.mark.parametrize("paper", PAPERS)
def test_every_claim_names_real_cells_and_holds_on_the_published_numbers(paper):
    published = load_published(paper)
    cells = {(t, r, c): v for t, r, c, v in zip(published["table"], published["row"], published["column"],
                                               published["value"])}
    for claim in load_claims(paper):
        values = {}
        for side in (claim.lhs, claim.rhs):
            assert (claim.table, *side) in cells, f"{claim.id}: no published cell {claim.table} {side}"
            values[side] = cells[(claim.table, *side)]
        assert claim.verdict(values) == "held", f"{claim.id} does not hold on the paper's own numbers"


def test_claims_are_judged_on_constructed_numbers():
    claim = Claim("c", "cfa", "table1", "CFA raises AT's worst AA", ("AT + CFA", "w"), ">", ("AT", "w"))
    assert claim.verdict({("AT + CFA", "w"): 25.0, ("AT", "w"): 20.0}) == "held"
    assert claim.verdict({("AT + CFA", "w"): 19.0, ("AT", "w"): 20.0}) == "refuted"
    assert claim.verdict({("AT + CFA", "w"): 20.0, ("AT", "w"): 20.0}) == "refuted"  # strict
    assert claim.verdict({("AT + CFA", "w"): 25.0, ("AT", "w"): math.nan}) == "not testable"
    assert claim.verdict({("AT + CFA", "w"): 25.0}) == "not testable"


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
    claims.write_text("id,table,statement,lhs_row,lhs_column,op,rhs_row,rhs_column\n"
                      f"x,table1,BiLAW beats AT,F-MNIST / BiLAW(ours),{col},>,{row},{col}\n")
    monkeypatch.setattr("bench.experiments.claims.CLAIMS_DIR", tmp_path)
    monkeypatch.setattr("bench.experiments.claims.load_claims.__defaults__", (tmp_path,))
    assert check_table(experiment, cells, "smoke").verdict == "reproduced"
    cells.loc[(cells["row"] == row) & (cells["column"] == col), "ours"] = 99.0
    result = check_table(experiment, cells, "smoke")
    assert result.verdict == "not reproduced" and result.claims[0][1] == "refuted"


def test_claim_files_are_validated(tmp_path):
    bad = tmp_path / "cfa.csv"
    bad.write_text("id,table,statement,lhs_row,lhs_column,op,rhs_row,rhs_column\nx,table1,s,a,b,=>,c,d\n")
    with pytest.raises(ValueError, match=r"operators \['=>'\]"):
        load_claims("cfa", tmp_path)


def test_check_exit_status_gates_only_the_paper_profile(tmp_path, capsys):
    assert main(["check", "table1_bilaw", "--profile", "paper", "--runs-dir", str(tmp_path)]) == 3  # incomplete
    assert "table1_bilaw [paper]: incomplete" in capsys.readouterr().out
    assert main(["check", "table1_bilaw", "--profile", "fast", "--runs-dir", str(tmp_path)]) == 0
    assert main(["check", "table1_nope", "--runs-dir", str(tmp_path)]) == 2
