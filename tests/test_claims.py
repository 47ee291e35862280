"""Claims as the papers make them: the files' schema, cells that exist in the published layout, magnitudes
judged with their noise, conjunctions over every comparison, and claims the paper's own table contradicts."""
import math

import pandas as pd
import pytest

from bench.experiments.claims import (COLUMNS, CONTRADICTED, MEASURES, OPS, PICKS, claims_contradicted_by_published,
                                      contradicted, load_claims, published_values)
from bench.experiments.stats import NOT_DISTINGUISHABLE
from bench.published import PAPERS, load_published

COL = "Tiny-CNN / perturbation: ℓ∞ / ε = 0.1 / AA"
CLEAN = "Tiny-CNN / perturbation: ℓ∞ / ε = 0.1 / Clean"
BILAW, AT, MAIL = "F-MNIST / BiLAW(ours)", "F-MNIST / AT", "F-MNIST / MAIL"

# Reviewed against the papers' tables (see the report of issue 14): claims whose own table refutes them.
REVIEWED_CONTRADICTED = {
    "caat": {"t1_caat_avg_nat_below_all", "t1_caat_worst_nat_below_all"},
    "cfa": {"t3_fawa_avg_cost_below_0_3"},
    "uiat": {"t1_svhn_uiat_robust_above_all", "t5_uiat_boosts_each_single_step"},
    "bilaw": {"t1_mnist_beats_others_clean_pgd", "t1_mnist_beats_reweighting_aa", "t1_fmnist_beats_others_clean_pgd",
              "t2_up_to_6_clean", "t2_up_to_5_robust", "t2_improves_clean_and_robust", "t2_up_to_10_over_gairat_wmmr",
              "t2_trades_pgd_up_to_5", "t8_multiclass_margin_best_input"},
}


def write(tmp_path, *rows: dict, paper: str = "bilaw"):
    """A claims file of `rows` (missing fields take defaults) in tmp_path."""
    defaults = dict(table="table1", section="4.1", quote="A sentence.", statement="s", pick="each",
                    lhs_rows=BILAW, lhs_columns=COL, rhs_rows=AT, rhs_columns="", measure="points", op=">",
                    value="0", tol="")
    pd.DataFrame([{**defaults, "id": f"c{i}", **row} for i, row in enumerate(rows)])[COLUMNS].to_csv(
        tmp_path / f"{paper}.csv", index=False)
    return load_claims(paper, tmp_path)


@pytest.mark.parametrize("paper", PAPERS)
def test_claim_files_follow_the_schema_and_quote_their_sentence(paper):
    rows = pd.read_csv(f"tables/claims/{paper}.csv", dtype=str, keep_default_na=False)
    assert list(rows.columns) == COLUMNS and rows["id"].is_unique
    assert set(rows["pick"]) <= set(PICKS) and set(rows["measure"]) <= set(MEASURES) and set(rows["op"]) <= set(OPS)
    assert (rows["quote"] != "").all() and (rows["section"] != "").all() and (rows["statement"] != "").all()
    magnitudes = rows[(rows["op"] == "~") | (rows["value"].astype(float) != 0)]
    assert len(magnitudes) >= 2, "every paper states at least two magnitudes"
    assert (rows[rows["op"] == "~"]["tol"].astype(float) > 0).all()


@pytest.mark.parametrize("paper", PAPERS)
def test_every_claim_cell_exists_in_the_published_layout(paper):
    published = load_published(paper)
    cells = set(zip(published["table"], published["row"], published["column"]))
    for claim in load_claims(paper):
        missing = {cell for cell in claim.cells() if (claim.table, *cell) not in cells}
        assert not missing, f"{claim.id}: {missing}"
        assert claim.parts(published_values(paper, claim.table)), f"{claim.id} makes no comparison"


@pytest.mark.parametrize("paper", PAPERS)
def test_each_claim_holds_on_the_published_numbers_unless_reviewed_as_contradicted(paper):
    found = {claim.id for claim, _ in claims_contradicted_by_published(paper)}
    assert found == REVIEWED_CONTRADICTED[paper]


def test_the_loader_names_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match=r"operator '=>'"):
        write(tmp_path, {"op": "=>"})
    with pytest.raises(ValueError, match=r"pick 'some'"):
        write(tmp_path, {"pick": "some"})
    with pytest.raises(ValueError, match=r"cells not in the published table1: \[\('F-MNIST / Nope'"):
        write(tmp_path, {"rhs_rows": "F-MNIST / Nope"})
    with pytest.raises(ValueError, match="tolerance > 0 goes with '~'"):
        write(tmp_path, {"op": "~", "value": "2"})
    with pytest.raises(ValueError, match="quotes its sentence"):
        write(tmp_path, {"quote": ""})
    with pytest.raises(ValueError, match="as many lhs as rhs rows"):
        write(tmp_path, {"pick": "pairs", "rhs_rows": f"{AT}; {MAIL}"})


def test_magnitude_claims_are_held_refuted_or_not_distinguishable(tmp_path):
    (claim,) = write(tmp_path, {"op": "~", "value": "2", "tol": "0.6"})  # "beats AT by 2 points"
    cells = lambda ours, theirs: {(BILAW, COL): ours, (AT, COL): theirs}
    tight = {(BILAW, COL): 0.1, (AT, COL): 0.1}
    assert claim.verdict(cells(70.0, 68.1), tight) == "held"  # d = 1.9 ± 0.28
    assert claim.verdict(cells(70.0, 66.0), tight) == "refuted"  # d = 4.0
    noisy = {(BILAW, COL): 2.7, (AT, COL): 2.7}  # AA on 300 images
    assert claim.verdict(cells(70.0, 68.1), noisy) == NOT_DISTINGUISHABLE
    assert claim.verdict(cells(70.0, 60.0), noisy) == NOT_DISTINGUISHABLE  # d = 10 − 2 × 3.8 reaches 2.6
    assert claim.verdict(cells(70.0, 56.0), noisy) == "refuted"  # d = 14 − 7.6 clears it
    assert claim.verdict(cells(70.0, math.nan), tight) == "not testable"
    (relative,) = write(tmp_path, {"measure": "relative", "op": "~", "value": "-51", "tol": "0.6"})
    assert relative.verdict(cells(1.96, 4.02)) == "held"  # −51.2% of the rhs
    assert relative.verdict(cells(2.20, 4.02)) == "refuted"  # −45.3%


def test_a_claim_over_several_comparisons_is_their_conjunction(tmp_path):
    each, best, top = write(tmp_path, {"rhs_rows": f"{AT}; {MAIL}"}, {"pick": "best", "rhs_rows": f"{AT}; {MAIL}"},
                            {"pick": "max", "rhs_rows": f"{AT}; {MAIL}", "op": "~", "value": "5", "tol": "0.6"})
    values = {(BILAW, COL): 70.0, (AT, COL): 65.0, (MAIL, COL): 71.0}
    assert len(each.judge(values).parts) == 2 and each.verdict(values) == "refuted"  # below MAIL
    assert best.judge(values).parts[0].rhs == (MAIL, COL)  # the strongest, chosen on the values
    assert best.verdict({**values, (MAIL, COL): 60.0}) == "held"
    assert top.judge(values).parts[0].d == pytest.approx(5.0) and top.verdict(values) == "held"  # up to 5: vs AT
    (paired,) = write(tmp_path, {"pick": "pairs", "lhs_rows": f"{BILAW}; {MAIL}", "rhs_rows": f"{AT}; {AT}",
                                 "lhs_columns": f"{COL}; {CLEAN}"})
    assert [(p.lhs[0], p.rhs[0]) for p in paired.judge({}).parts] == []  # nothing measured
    assert paired.verdict({}) == "not testable"
    values = {(BILAW, COL): 70, (AT, COL): 65, (MAIL, COL): 66, (BILAW, CLEAN): 80, (AT, CLEAN): 79, (MAIL, CLEAN): 81}
    assert len(paired.judge(values).parts) == 4 and paired.verdict(values) == "held"


def test_contradiction_by_the_papers_own_table_is_detected_on_a_synthetic_table(tmp_path):
    claims = write(tmp_path, {"id": "ok"}, {"op": "~", "value": "5", "tol": "0.6"}, {"rhs_rows": f"{AT}; {MAIL}"})
    table = {(BILAW, COL): 70.0, (AT, COL): 68.0, (MAIL, COL): 70.0}  # a tie with MAIL, 2 points over AT
    found = contradicted(claims, {"table1": table})
    assert [c.id for c, _ in found] == ["c1", "c2"]
    (_, magnitude), (_, tie) = found
    assert magnitude.parts[0].d == pytest.approx(2.0)
    assert [(p.rhs[0], p.d) for p in tie.parts if p.verdict == "refuted"] == [(MAIL, 0.0)]


def test_check_shows_contradicted_claims_and_leaves_them_out_of_the_verdict(tmp_path, monkeypatch):
    from bench.papers import EXPERIMENTS
    from bench.experiments.check import check_table

    write(tmp_path, {"op": "~", "value": "5", "tol": "0.6"}, {"id": "ok"})  # F-MNIST: 68.8 − 68.3 = 0.5
    monkeypatch.setattr("bench.experiments.claims.load_claims.__defaults__", (tmp_path,))
    experiment = EXPERIMENTS.get("table1_bilaw")
    pub = load_published("bilaw")
    pub = pub[pub["table"] == "table1"]
    cells = pd.DataFrame({"row": pub["row"], "column": pub["column"], "unit": pub["unit"], "ours": pub["value"],
                          "ours_se": 0.1, "published": pub["value"]})
    result = check_table(experiment, cells, "fast")
    assert [c.verdict for c in result.claims] == [CONTRADICTED, "held"]
    assert result.verdict == "reproduced"
    text = "\n".join(result.lines())
    assert CONTRADICTED in text and "published: F-MNIST / BiLAW(ours) / " in text and "= +0.50" in text
