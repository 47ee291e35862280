"""The audit of the published tables: each rule fires on a tiny synthetic table built to break it and stays
quiet on one that does not; on the real files it finds the issue's examples; `check` leaves flagged cells
out of its cell verdicts and rendered tables mark them."""
import math

import pandas as pd
import pytest

from bench.audit import RULES, audit, audit_cells, flagged_cells, parse_target
from bench.audit.roles import Role, column_role
from bench.cli import main
from bench.papers import EXPERIMENTS
from bench.experiments.check import check_table
from bench.experiments.render import to_markdown
from bench.published import load_published


def table(cells, name="table1", unit="acc%"):
    """A published table from {(row, column): value}, each printed with one decimal."""
    return pd.DataFrame([{"paper": "x", "table": name, "row": r, "column": c, "value": float(v), "std": math.nan,
                          "unit": unit, "note": "", "printed": f"{v:.1f}"} for (r, c), v in cells.items()])


def findings(rule, *tables):
    return [f for f in audit_cells(pd.concat(tables, ignore_index=True)) if f.rule == rule]


TRIPLE = ("Avg. Nat.", "Avg. Bdy.", "Avg. Rob.")
WORST_TRIPLE = ("Worst Nat.", "Worst Bdy.", "Worst Rob.")
CASES = {  # rule → (a table it must flag, a table it must not)
    "triple_average_sum": (table(dict(zip([("m", c) for c in TRIPLE], (19.6, 29.9, 49.3))), unit="err%"),
                           table(dict(zip([("m", c) for c in TRIPLE], (19.6, 29.9, 49.4))), unit="err%")),
    "triple_worst_bound": (table(dict(zip([("m", c) for c in WORST_TRIPLE], (23.6, 23.3, 48.1))), unit="err%"),
                           table(dict(zip([("m", c) for c in WORST_TRIPLE], (23.6, 23.3, 45.0))), unit="err%")),
    "gap_is_clean_minus_attacked": (
        table({("128", "C / Clean"): 86.1, ("128", "C / PGD"): 58.9, ("128", "C / PGD - Clean"): 25.0}),
        table({("128", "C / Clean"): 86.1, ("128", "C / PGD"): 58.9, ("128", "C / PGD - Clean"): 27.2})),
    "attacked_at_most_clean": (
        table({("M / AT", "FC1 / Clean"): 8.8, ("M / AT", "FC1 / PGD"): 97.4}),
        table({("M / AT", "FC1 / Clean"): 98.8, ("M / AT", "FC1 / PGD"): 97.4})),
    "autoattack_at_most_pgd_cw": (
        table({("AT", "C / PGD"): 50.0, ("AT", "C / CW"): 52.0, ("AT", "C / AA"): 51.0}),
        table({("AT", "C / PGD"): 50.0, ("AT", "C / CW"): 52.0, ("AT", "C / AA"): 49.0})),
    "worst_at_most_average": (
        table({("AT", "Best / AA. / Avg."): 40.0, ("AT", "Best / AA. / Worst-20%"): 45.0}),
        table({("AT", "Best / AA. / Avg."): 40.0, ("AT", "Best / AA. / Worst-20%"): 25.0})),
    "peer_outlier": (
        table({(f"F / {m}", "FC1 / Clean"): v for m, v in zip("abcdef", (86.9, 87.1, 90.1, 88.0, 87.5, 98.5))}),
        table({(f"F / {m}", "FC1 / Clean"): v for m, v in zip("abcdef", (86.9, 87.1, 90.1, 88.0, 87.5, 91.5))})),
    "repeated_row_in_table": (
        table({("GAIRAT", "Clean"): 80.1, ("GAIRAT", "PGD"): 50.2, ("WMMR", "Clean"): 80.1, ("WMMR", "PGD"): 50.2}),
        table({("GAIRAT", "Clean"): 80.1, ("GAIRAT", "PGD"): 50.2, ("WMMR", "Clean"): 80.1, ("WMMR", "PGD"): 50.3})),
    "repeated_row_across_tables": (
        pd.concat([table({("C / BiLAW", "W / Clean"): 86.1, ("C / BiLAW", "W / PGD"): 58.9}, "table2"),
                   table({("1/λ = 6", "C / Clean"): 86.1, ("1/λ = 6", "C / PGD"): 58.9}, "table7")]),
        pd.concat([table({("C / BiLAW", "W / Clean"): 86.1, ("C / BiLAW", "W / PGD"): 58.9}, "table2"),
                   table({("BiLAW", "C / Clean"): 86.1, ("BiLAW", "C / PGD"): 58.9}, "table7")])),  # same name
}


def test_every_rule_has_a_case():
    assert sorted(CASES) == list(RULES)


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_fires_on_a_table_that_breaks_it_and_not_on_one_that_does_not(rule):
    bad, good = CASES[rule]
    assert findings(rule, bad), f"{rule} missed a broken table"
    assert not findings(rule, good), f"{rule} fired on a sound table"


def test_rounding_of_the_printed_values_never_fires_an_identity():
    # 19.6 + 29.9 = 49.5 and 49.6 differ by 0.1 < three half-units of the last decimal
    assert not findings("triple_average_sum", table(dict(zip([("m", c) for c in TRIPLE], (19.6, 29.9, 49.6))),
                                                    unit="err%"))
    assert findings("triple_average_sum", table(dict(zip([("m", c) for c in TRIPLE], (19.6, 29.9, 49.7))),
                                                unit="err%"))


def test_errors_are_ordered_as_accuracies():
    # robust error below natural error means robust accuracy above clean accuracy
    assert findings("attacked_at_most_clean", table({("m", "Avg. Nat."): 20.0, ("m", "Avg. Rob."): 15.0}, unit="err%"))
    assert not findings("attacked_at_most_clean", table({("m", "Avg. Nat."): 20.0, ("m", "Avg. Rob."): 45.0},
                                                        unit="err%"))
    assert findings("worst_at_most_average", table({("m", "Avg. Nat."): 20.0, ("m", "Worst Nat."): 15.0}, unit="err%"))


def test_a_plainly_trained_row_is_no_peer_under_attack():
    rows = {(f"F / {m}", "FC1 / PGD"): v for m, v in zip("abcde", (70.1, 71.0, 72.3, 70.8, 71.5))}
    assert not findings("peer_outlier", table({**rows, ("F / plain", "FC1 / PGD"): 1.7}))
    assert findings("peer_outlier", table({**rows, ("F / GAIRAT", "FC1 / PGD"): 1.7}))


@pytest.mark.parametrize("column,role", [
    ("Tiny-CNN / perturbation: ℓ∞ / ε = 0.1 / AA", Role("Tiny-CNN / perturbation: ℓ∞ / ε = 0.1", "aa")),
    ("Best / AA. Accuracy / Worst", Role("Best", "aa", "worst")),
    ("Last / Clean / Worst-20%", Role("Last", "clean", "worst20")),
    ("Worst Rob.", Role("", "rob", "worst")),
    ("Avg. Bdy. (%)", Role("", "bdy", "avg")),
    ("Worst Robust", Role("", "robust", "worst")),
    ("eps=8/255 / Natural", Role("eps=8/255", "clean")),
    ("CIFAR10 / PGD - Clean", Role("CIFAR10", "gap")),
    ("Time(s)", Role("Time(s)", None)),
])
def test_column_roles_are_read_from_the_papers_headers(column, role):
    assert column_role(column) == role


def test_the_issues_examples_are_found_in_bilaw_table1():
    flags = flagged_cells("bilaw", "table1")
    fc1_l2 = "FC1 / perturbation: ℓ2 / ε = 0.3 / "
    rules = {f.rule for f in flags[("MNIST / AT", fc1_l2 + "Clean")]}
    assert {"attacked_at_most_clean", "peer_outlier"} <= rules  # "8.8" next to PGD 97.4
    assert [f.rule for f in flags[("F-MNIST / plain", "FC1 / perturbation: ℓ∞ / ε = 0.1 / Clean")]] == ["peer_outlier"]


def test_caat_table1_breaks_its_own_error_identity():
    lines = [f.line() for f in audit("caat") if f.rule == "triple_average_sum"]
    assert any("TRADES (1/λ = 6)" in line and "49.3" in line for line in lines)


def test_check_leaves_flagged_cells_out_of_cell_verdicts_and_tables_mark_them():
    experiment = EXPERIMENTS.get("table1_bilaw")
    pub = load_published("bilaw")
    pub = pub[pub["table"] == "table1"]
    cells = pd.DataFrame({"row": pub["row"], "column": pub["column"], "unit": pub["unit"], "ours": pub["value"],
                          "published": pub["value"]})
    flagged = ("MNIST / AT", "FC1 / perturbation: ℓ2 / ε = 0.3 / Clean")
    at = (cells["row"] == flagged[0]) & (cells["column"] == flagged[1])
    cells.loc[at, "ours"] = 98.6  # far from the printed 8.8: would be 'outside' if it were judged
    result = check_table(experiment, cells, "paper")
    assert result.verdict == "reproduced" and not result.outside
    assert [(r, c) for r, c, _ in result.unjudged] == [flagged, ("MNIST / AT", "FC1 / perturbation: ℓ2 / ε = 0.3 / PGD"),
                                                       ("MNIST / AT", "FC1 / perturbation: ℓ2 / ε = 0.3 / AA"),
                                                       ("F-MNIST / plain", "FC1 / perturbation: ℓ∞ / ε = 0.1 / Clean")]
    assert "4 not judged" in "\n".join(result.lines())
    full = cells.assign(ours_std=math.nan, seeds=1, published_std=math.nan, diff=cells["ours"] - cells["published"],
                        status="done", runs="", checkpoints="", in_warmup=False, source="store")
    text = to_markdown(experiment, full, "paper", tolerance=1.5)
    assert "98.6 (8.8, +89.8) ⚠ ‡" in text
    assert "- MNIST / AT | FC1 / perturbation: ℓ2 / ε = 0.3 / Clean: attacked_at_most_clean" in text


def test_audit_command_prints_every_finding_and_refuses_unknown_targets(capsys):
    assert main(["audit", "table1_bilaw"]) == 0
    out = capsys.readouterr().out
    assert "bilaw table1: 4 finding(s)" in out and "pgd accuracy 97.4 > clean 8.8" in out
    assert main(["audit", "table9"]) == 2
    assert "audit target 'table9'" in capsys.readouterr().err
    assert parse_target("table7_bilaw") == ("bilaw", "table7")
