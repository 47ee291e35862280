"""Does a table reproduce? Cell by cell (within a stated tolerance of the published value) and claim by
claim (does the paper's comparison hold on our numbers), with one overall verdict per table.

Tolerances are in points of the published unit and apply to percentages only; timing cells depend on the
device and are shown, not judged. Only the `paper` profile is expected to match the numbers; at `fast` and
`quick`/`smoke` the tolerance is indicative and the claims carry the verdict.

Both cells and claims know their noise (bench.experiments.stats): a cell is "off" only when ours ± 2 se lies
wholly outside published ± tolerance, and a claim is held or refuted only when its difference clears 2 se;
anything in between is "not distinguishable at this budget". A claim the paper's own table contradicts is
shown as such and left out of the verdict.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd

from bench.audit import excluded, flagged_cells
from bench.experiments.base import Experiment
from bench.experiments.claims import CONTRADICTED, Claim, Judgement, claims_for, published_values
from bench.experiments.stats import NOT_DISTINGUISHABLE, Accepted, judge

TOLERANCE = {"paper": 1.5, "fast": 5.0, "quick": 5.0, "smoke": 5.0}  # points of acc% / err%
JUDGED_UNITS = ("acc%", "err%")
VERDICTS = ("reproduced", "not reproduced", "incomplete", NOT_DISTINGUISHABLE)
CLAIM_VERDICTS = ("held", "refuted", NOT_DISTINGUISHABLE, "not testable", CONTRADICTED)


class ClaimCheck(NamedTuple):
    claim: Claim
    verdict: str  # on our numbers, or CONTRADICTED when the published numbers already refute the claim
    judgement: Judgement  # on our numbers
    published: Judgement  # on the paper's numbers
    warmup_rows: tuple[str, ...] = ()  # rows of its cells read inside a method's warm-up (render.warmup_before)

    def deciding(self) -> str:
        """The comparison that decided the verdict, with its numbers ('' when none was made), and which of its
        rows were read before their method's own update began: the verdict then speaks of the warm-up model."""
        contradicted = self.verdict == CONTRADICTED
        part = (self.published if contradicted else self.judgement).worst()
        text = "" if part is None else f"{'published' if contradicted else 'ours'}: {part.text()}"
        if text and self.warmup_rows and not contradicted:
            text += (f" (§ {', '.join(self.warmup_rows)}: read inside the method's warm-up, before its own update; "
                     "see 'Checkpoints read')")
        return text


def _se(se: float) -> str:
    return "" if math.isnan(se) else f" ± {se:.1f}"


@dataclass
class TableCheck:
    experiment: Experiment
    profile: str
    tolerance: float
    cells: int = 0
    measured: int = 0
    outside: list[tuple[str, str, float, float, float]] = field(default_factory=list)  # row, col, ours, pub, se
    undecided: list[tuple[str, str, float, float, float]] = field(default_factory=list)  # within 2 se of the bound
    claims: list[ClaimCheck] = field(default_factory=list)
    unjudged: list[tuple[str, str, str]] = field(default_factory=list)  # row, column, why: the audit flagged it
    damaged: list[tuple[str, str, str]] = field(default_factory=list)  # row, column, which file and why

    @property
    def verdict(self) -> str:
        """'not reproduced' if a judged cell is off (paper profile only) or a claim is refuted; 'incomplete' if
        something is unmeasured or untestable; 'not distinguishable at this budget' if a claim (or, at the
        paper profile, a cell) is within its noise; else 'reproduced'."""
        verdicts = [c.verdict for c in self.claims]
        if "refuted" in verdicts or (self.profile == "paper" and self.outside):
            return "not reproduced"
        if self.measured < self.cells or "not testable" in verdicts:
            return "incomplete"
        if NOT_DISTINGUISHABLE in verdicts or (self.profile == "paper" and self.undecided):
            return NOT_DISTINGUISHABLE
        return "reproduced"

    def lines(self) -> list[str]:
        judged = "judged" if self.profile == "paper" else "indicative at this profile"
        out = [f"{self.experiment.id} [{self.profile}]: {self.verdict}",
               f"  cells: {self.measured} of {self.cells} measured; {len(self.outside)} outside ±{self.tolerance:g} "
               f"points by more than 2 se, {len(self.undecided)} not distinguishable from the bound ({judged}){self._unjudged_text()}"]
        out += [f"    ⚠ {row} | {col}: ours {ours:.1f}{_se(se)}, published {pub:g} ({ours - pub:+.1f})"
                for row, col, ours, pub, se in self.outside]
        out += [f"    not judged {row} | {col}: {why}" for row, col, why in self.unjudged]
        out += [f"    not measured {row} | {col}: {why}" for row, col, why in self.damaged]
        counts = {v: sum(1 for c in self.claims if c.verdict == v) for v in CLAIM_VERDICTS}
        out.append("  claims: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
        for c in self.claims:
            out.append(f"    {c.verdict:<12} {c.claim.id}: {c.claim.text()}")
            if c.deciding():
                out.append(f"{'':<17}{c.deciding()}")
        return out

    def _unjudged_text(self) -> str:
        return f", {len(self.unjudged)} not judged (published value flagged by `bench audit`)" if self.unjudged else ""

    def markdown(self) -> str:
        lines = ["", f"**Check ({self.profile}): {self.verdict}.** {self.measured} of {self.cells} cells measured, "
                     f"{len(self.outside)} outside ±{self.tolerance:g} points"
                     f"{self._unjudged_text()}."]
        if self.claims:
            lines += ["", "| claim | statement | verdict | deciding comparison |", "|---|---|---|---|"]
            lines += [f"| {c.claim.id} | {c.claim.text()} | {c.verdict} | {c.deciding()} |" for c in self.claims]
        return "\n".join(lines) + "\n"


def check_table(experiment: Experiment, cells: pd.DataFrame, profile: str) -> TableCheck:
    """Judge a table's collected cells (bench.experiments.render.collect) against the published values."""
    result = TableCheck(experiment, profile, TOLERANCE[profile], cells=len(cells))
    values, ses, warm = {}, {}, set()
    flags = flagged_cells(experiment.paper, experiment.table)
    for r in cells.to_dict("records"):
        if math.isnan(r["ours"]):
            if str(r.get("status", "")).startswith("damaged"):  # named, so the damage is not mistaken for a run not done yet
                result.damaged.append((r["row"], r["column"], r["status"]))
            continue
        result.measured += 1
        se = r.get("ours_se", math.nan)
        values[(r["row"], r["column"])], ses[(r["row"], r["column"])] = r["ours"], se
        if r.get("in_warmup"):
            warm.add((r["row"], r["column"]))
        found = flags.get((r["row"], r["column"]), [])
        if excluded(found):  # the published number itself is in doubt: shown, not judged
            result.unjudged.append((r["row"], r["column"], "; ".join(f"{f.rule}: {f.detail}" for f in found)))
        elif r["unit"] in JUDGED_UNITS:
            band = Accepted(r["published"] - result.tolerance, r["published"] + result.tolerance, closed=True)
            cell = judge(r["ours"], se, band)
            if cell != "held":
                where = result.outside if cell == "refuted" else result.undecided
                where.append((r["row"], r["column"], r["ours"], r["published"], se))
    published = published_values(experiment.paper, experiment.table)
    for claim in claims_for(experiment.paper, experiment.table):
        ours, theirs = claim.judge(values, ses), claim.judge(published)
        verdict = CONTRADICTED if theirs.verdict == "refuted" else ours.verdict
        rows = tuple(sorted({row for row, column in claim.cells() & warm}))
        result.claims.append(ClaimCheck(claim, verdict, ours, theirs, rows))
    return result
