"""What a published cell measures, read from its header path and row label, so the audit's rules apply to
every paper's layout without a per-table map.

A column path such as "Tiny-CNN / perturbation: ℓ∞ / ε = 0.1 / AA" (BiLAW Table 1), "Best / AA. Accuracy /
Worst" (CFA Table 1) or "Avg. Rob." (CAAT Table 1) splits into a *group* (the setting the column belongs to:
model, threat model, checkpoint), a *metric* (clean, pgd, cw, aa, robust, the FRL/CAAT error triple's nat /
bdy / rob, or the gap) and an *aggregate* over classes (avg, worst, worst20). Row labels "<dataset> / <method>"
split into a peer group (the dataset) and the method.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

METRICS = {  # header word (lower case, no trailing dot) → metric
    "clean": "clean", "natural": "clean", "clean accuracy": "clean", "nat": "nat",
    "pgd": "pgd", "pgd-20": "pgd", "cw": "cw", "aa": "aa", "aa. accuracy": "aa", "robust": "robust",
    "bdy": "bdy", "rob": "rob", "pgd - clean": "gap",
}
AGGREGATES = {"avg": "avg", "worst": "worst", "worst-20%": "worst20"}
ATTACKED = ("pgd", "cw", "aa", "robust", "rob")  # metrics of accuracy (or error) under attack
NOT_ADVERSARIALLY_TRAINED = ("plain", "natural", "natural training", "standard")


@dataclass(frozen=True)
class Role:
    group: str  # the column path without its metric and aggregate words ("" for a single-level header)
    metric: str | None  # a METRICS value; None where the header names no known metric (a time column)
    aggregate: str = "avg"


def _word(part: str) -> str:
    return part.replace("(%)", "").strip().rstrip(".").strip().lower()


def column_role(column: str) -> Role:
    """The column's group, metric and class aggregate ("Worst Rob." → ("", "rob", "worst"))."""
    group, metric, aggregate = [], None, "avg"
    for part in column.split(" / "):
        word = _word(part)
        head, _, rest = word.partition(" ")
        if word in AGGREGATES:
            aggregate = AGGREGATES[word]
        elif word in METRICS:
            metric = METRICS[word]
        elif head.rstrip(".") in AGGREGATES and _word(rest) in METRICS:  # "Avg. Nat.", "Worst Robust"
            aggregate, metric = AGGREGATES[head.rstrip(".")], METRICS[_word(rest)]
        else:
            group.append(part)
    return Role(" / ".join(group), metric, aggregate)


def row_group(row: str) -> str:
    """The rows a row is compared with: the label before its last " / " ("F-MNIST / AT" → "F-MNIST")."""
    return row.rpartition(" / ")[0]


def method(row: str) -> str:
    return row.rpartition(" / ")[2]


def adversarially_trained(row: str) -> bool:
    return method(row).strip().lower() not in NOT_ADVERSARIALLY_TRAINED


def as_accuracy(value: float, unit: str) -> float:
    """An accuracy in % (an error in % is 100 − it); NaN for units that are not accuracies or errors."""
    return value if unit == "acc%" else 100 - value if unit == "err%" else math.nan


def rounding(printed: str) -> float:
    """Half a unit in the last printed decimal ("49.3" → 0.05): how far the true number may sit from it."""
    decimals = len(printed.strip().partition(".")[2])
    return 0.5 * 10 ** -decimals
