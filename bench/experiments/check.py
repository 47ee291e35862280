"""Does a table reproduce? Cell by cell (within a stated tolerance of the published value) and claim by
claim (does the paper's comparison hold on our numbers), with one overall verdict per table.

Tolerances are in points of the published unit and apply to percentages only; timing cells depend on the
device and are shown, not judged. Only the `paper` profile is expected to match the numbers; at `fast` and
`quick`/`smoke` the tolerance is indicative and the claims carry the verdict.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from bench.experiments.base import Experiment
from bench.experiments.claims import Claim, claims_for

TOLERANCE = {"paper": 1.5, "fast": 5.0, "quick": 5.0, "smoke": 5.0}  # points of acc% / err%
JUDGED_UNITS = ("acc%", "err%")
VERDICTS = ("reproduced", "not reproduced", "incomplete")


@dataclass
class TableCheck:
    experiment: Experiment
    profile: str
    tolerance: float
    cells: int = 0
    measured: int = 0
    outside: list[tuple[str, str, float, float]] = field(default_factory=list)  # row, column, ours, published
    claims: list[tuple[Claim, str]] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """'not reproduced' if a judged cell is out of tolerance (paper profile only) or a claim is refuted;
        'incomplete' if something is unmeasured or untestable; else 'reproduced'."""
        refuted = any(v == "refuted" for _, v in self.claims)
        if refuted or (self.profile == "paper" and self.outside):
            return "not reproduced"
        if self.measured < self.cells or any(v == "not testable" for _, v in self.claims):
            return "incomplete"
        return "reproduced"

    def lines(self) -> list[str]:
        judged = "judged" if self.profile == "paper" else "indicative at this profile"
        out = [f"{self.experiment.id} [{self.profile}]: {self.verdict}",
               f"  cells: {self.measured} of {self.cells} measured; {len(self.outside)} outside ±{self.tolerance:g} "
               f"points ({judged})"]
        out += [f"    ⚠ {row} | {col}: ours {ours:.1f}, published {pub:g} ({ours - pub:+.1f})"
                for row, col, ours, pub in self.outside]
        counts = {v: sum(1 for _, verdict in self.claims if verdict == v) for v in ("held", "refuted", "not testable")}
        out.append(f"  claims: {counts['held']} held, {counts['refuted']} refuted, {counts['not testable']} not testable")
        out += [f"    {verdict:<12} {claim.id}: {claim.text()}" for claim, verdict in self.claims]
        return out

    def markdown(self) -> str:
        lines = ["", f"**Check ({self.profile}): {self.verdict}.** {self.measured} of {self.cells} cells measured, "
                     f"{len(self.outside)} outside ±{self.tolerance:g} points."]
        if self.claims:
            lines += ["", "| claim | verdict |", "|---|---|"]
            lines += [f"| {claim.text()} | {verdict} |" for claim, verdict in self.claims]
        return "\n".join(lines) + "\n"


def check_table(experiment: Experiment, cells: pd.DataFrame, profile: str) -> TableCheck:
    """Judge a table's collected cells (bench.experiments.render.collect) against the published values."""
    result = TableCheck(experiment, profile, TOLERANCE[profile], cells=len(cells))
    values = {}
    for r in cells.itertuples():
        if math.isnan(r.ours):
            continue
        result.measured += 1
        values[(r.row, r.column)] = r.ours
        if r.unit in JUDGED_UNITS and abs(r.ours - r.published) > result.tolerance:
            result.outside.append((r.row, r.column, r.ours, r.published))
    result.claims = [(claim, claim.verdict(values)) for claim in claims_for(experiment.paper, experiment.table)]
    return result
