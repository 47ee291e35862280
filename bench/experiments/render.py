"""Tables from stored runs only: each cell's number (mean ± std over seeds) next to the published one, with
the gap, or why it is missing (not runnable here, not run, queued, running, damaged, failed, crashed: the
states of bench/run_state.py). Nothing is trained or evaluated here; Markdown, LaTeX and CSV are written
atomically."""
from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev
from typing import Mapping

import pandas as pd

from bench import atomic
from bench.audit import excluded, flagged_cells
from bench.checkpoints import Checkpoint
from bench.config import RunConfig
from bench.eval_store import EvaluatedRun, Evaluation
from bench.experiments.base import Experiment, PlannedRun
from bench.experiments.stats import STATS, in_unit, se_in_unit, seeds_se
from bench.published import load_published
from bench.ledger import Ledger
from bench.run_state import run_states
from bench.store import RunStore
from methods.core.base import Warmup
from methods.core.registry import warmup_of

MISSING_ORDER = ("running", "queued", "submitted", "damaged", "failed", "crashed", "not run")  # the reason shown when no seed of a cell has finished


def group_runs(planned: list[PlannedRun]) -> dict[str, list[PlannedRun]]:
    groups: dict[str, list[PlannedRun]] = defaultdict(list)
    for run in planned:
        groups[run.key].append(run)
    return groups


def collect(experiment: Experiment, store: RunStore, profile: str,
            substitutions: Mapping[str, str] | None = None, ledger: Ledger | None = None) -> pd.DataFrame:
    """One row per cell: row, column, unit, ours (mean over finished seeds), ours_std, ours_se (its standard
    error: bench.experiments.stats), seeds, published, published_std, diff (ours − published), status, runs,
    checkpoints (what each of `runs` was read at, as the cell's name and the checkpoint it resolved to, e.g.
    best:model@e45 with 0-based epochs; "-" where nothing was read), in_warmup (some run was read at a checkpoint
    before its method's own update began: Method.warmup),
    source (store / ledger: where the finished runs were read; a run not finished in the store is read from the
    reproduction ledger, by default tables/results/). Cells with no run planned under `profile` (a
    profile such as `quick` that plans a few of the table's cells) are left out."""
    ledger = Ledger() if ledger is None else ledger
    groups = group_runs(experiment.runs(profile, substitutions))
    published = load_published(experiment.paper)
    published = published[published["table"] == experiment.table].set_index(["row", "column"])
    found = run_states(store.run_dir(run.config) for runs in groups.values() for run in runs if run.config)
    records = []
    for cell in experiment.cells():
        if cell.run not in groups:
            continue
        pub = published.loc[(cell.row, cell.column)]
        runs = groups[cell.run]
        values, ses, states, run_ids, sources, read, warm = [], [], [], [], [], [], False
        for run in runs:
            if run.config is None:
                states.append(f"not runnable: {run.why}")
                continue
            run_dir = store.run_dir(run.config)
            run_ids.append(run_dir.path.name)
            read.append("-")
            state = found[run_dir.path.name].status
            recorded = None if state == "done" else ledger.run(run_dir.path.name)
            if recorded is not None:
                source, state = recorded, "done"
            elif state == "done":
                source = EvaluatedRun(run_dir, run.evaluation or Evaluation(), run.selection)
            states.append("not run" if state == "new" else state)
            if state == "damaged":  # which file, and why, in the table's notes
                states[-1] = f"damaged: {found[run_dir.path.name].reason}"
            if state == "done":
                sources.append("store" if recorded is None else "ledger")
                measured = STATS.get(cell.stat)(source, cell)
                if measured is None:
                    states[-1] = (f"{cell.stat} under {cell.attack} at {cell.checkpoint} not evaluated yet "
                                  "(`bench run` evaluates it)")
                else:
                    values.append(in_unit(measured, pub["unit"]))
                    ses.append(se_in_unit(measured, pub["unit"]))
                    ckpt = source.resolve(cell.checkpoint)
                    read[-1] = "-" if ckpt is None else f"{cell.checkpoint}:{ckpt.label}"
                    warm |= ckpt is not None and warmup_before(run.config, ckpt) is not None
        ours = mean(values) if values else math.nan
        records.append({
            "row": cell.row, "column": cell.column, "unit": pub["unit"], "ours": ours,
            "ours_std": stdev(values) if len(values) > 1 else math.nan, "ours_se": seeds_se(values, ses),
            "seeds": len(values),
            "published": pub["value"], "published_std": pub["std"], "diff": ours - pub["value"],
            "status": _status(values, states), "runs": " ".join(run_ids), "checkpoints": " ".join(read),
            "in_warmup": warm, "source": "+".join(sorted(set(sources))),
        })
    return pd.DataFrame.from_records(records)


def warmup_before(cfg: RunConfig, ckpt: Checkpoint) -> Warmup | None:
    """The method's warm-up if `ckpt` of a run of `cfg` lies inside it (an averaged series never does: it is
    not the trained model)."""
    warmup = None if ckpt.series else warmup_of(cfg.method, cfg.hp_dict, cfg.epochs)
    return warmup if warmup is not None and ckpt.epoch < warmup.until else None


def _status(values: list[float], states: list[str]) -> str:
    if values:
        return "done" if len(values) == len(states) else f"partial: {len(values)} of {len(states)} seeds"
    for reason in MISSING_ORDER:
        for state in states:
            if state == reason or state.startswith(f"{reason}:"):
                return state
    return states[0] if states else "no run planned"


def _number(value: float, std: float) -> str:
    return f"{value:.1f}" if math.isnan(std) else f"{value:.1f}±{std:.1f}"


def cell_text(r: pd.Series, tolerance: float | None = None, marks: Mapping[str, str] | None = None) -> str:
    """'ours (published, ours − published)', a '⚠' when out of tolerance, or why it is missing (as a mark
    explained under the table when `marks` maps statuses to marks)."""
    pub = "–" if math.isnan(r["published"]) else _number(r["published"], r["published_std"])
    status = r["status"] if marks is None else marks.get(r["status"], r["status"])
    if math.isnan(r["ours"]):
        return f"— ({pub}) [{status}]"
    text = f"{_number(r['ours'], r['ours_std'])} ({pub}, {r['diff']:+.1f})"
    if tolerance is not None and abs(r["diff"]) > tolerance:
        text += " ⚠"
    return text + ("" if r["status"] == "done" else f" [{status}]")


def _budget(eps: float) -> str:
    """ε as the papers print it: k/255 where it is one, else the number (0.1, 0.3)."""
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{eps:g}"


def _images(n: int | None) -> str:
    return "all" if n is None else f"the first {n}"


def _selection(run: PlannedRun) -> str:
    """The rule behind `best`, saying where it selects on test data (as some papers do)."""
    c, rule = run.config, run.selection
    on = getattr(rule, "on", None)
    where = "" if on is None else (f" [selects on test data: {_images(c.eval_n)} test images]" if on == "test"
                                   else f" [selects on the held-out split '{on}', not on test data]")
    return f"best = {rule.describe()}{where}"


@dataclass(frozen=True)
class CheckpointRead:
    """One run's checkpoint that cells read, and whether it lies in the method's warm-up (Method.warmup)."""
    key: str  # PlannedRun.key
    run_id: str
    checkpoint: Checkpoint
    epochs: int
    rule: str
    warmup: Warmup | None  # set only when the checkpoint precedes the method's own update

    def line(self) -> str:
        c = self.checkpoint
        series = f" of the {c.series} series" if c.series else ""
        text = (f"{self.key} (`{self.run_id}`): epoch {c.epoch + 1} of {self.epochs}{series} ({c.label}; "
                f"{self.rule})")
        if self.warmup is not None:
            start = (f"which starts at epoch {self.warmup.until + 1}" if self.warmup.until < self.epochs
                     else f"which never starts in {self.epochs} epochs")
            text += (f" {WARMUP_MARK} before the method's own update, {start}: this checkpoint trained as "
                     f"{self.warmup.trains_as}, so its cells measure that")
        return text


WARMUP_MARK = "§"  # on cells read at a checkpoint inside the method's warm-up


def checkpoints_read(experiment: Experiment, cells: pd.DataFrame, profile: str,
                     substitutions: Mapping[str, str] | None) -> list[CheckpointRead]:
    """Each (run, checkpoint) the table's measured cells read, in table order; the epoch a rule selected is
    part of the number, so the table prints it."""
    planned = {run.config.run_id(): run for run in experiment.runs(profile, substitutions) if run.config is not None}
    out: dict[tuple[str, str], CheckpointRead] = {}
    for _, r in cells.iterrows():
        for run_id, read in zip(str(r["runs"]).split(), str(r["checkpoints"]).split()):
            name, _, label = read.partition(":")
            if read == "-" or (run_id, label) in out or run_id not in planned:
                continue
            run, ckpt = planned[run_id], Checkpoint.parse(label)
            rule = ("the last epoch" if name.startswith("last") else "named by the table" if "@" in name
                    else run.selection.describe())
            out[(run_id, label)] = CheckpointRead(run.key, run_id, ckpt, run.config.epochs, rule,
                                                  warmup_before(run.config, ckpt))
    return list(out.values())


def provenance(experiment: Experiment, profile: str, substitutions: Mapping[str, str] | None) -> list[str]:
    """One line per distinct training/evaluation/selection setting of the table's runnable runs."""
    runs = [run for run in experiment.runs(profile, substitutions) if run.config is not None]
    lines = sorted({
        f"{c.dataset}: {c.epochs} epoch{'s' * (c.epochs != 1)}"
        f"{'' if c.train_limit is None else f' on the first {c.train_limit} training images'}, train attack PGD-{c.attack_steps}"
        f"{' ℓ2' if c.norm == 'l2' else ''}{'' if c.eps is None else f' ε={_budget(c.eps)}'}, "
        + ("no evaluation" if ev is None else
           f"evaluation {'/'.join(ev.attacks)} on {_images(ev.n)} test images (AA on {_images(ev.aa_n or ev.n)})")
        + f"; {_selection(run)}"
        for run in runs for c, ev in [(run.config, run.evaluation)]})
    configs = [run.config for run in runs]
    seeds = sorted({c.seed for c in configs})
    subs = ", ".join(f"{a} → {b}" for a, b in (substitutions or {}).items()) or "none"
    return [f"seeds: {', '.join(map(str, seeds)) or '–'}; dataset substitutions: {subs}", *lines]


def to_markdown(experiment: Experiment, cells: pd.DataFrame, profile: str,
                substitutions: Mapping[str, str] | None = None, tolerance: float | None = None) -> str:
    """A Markdown table in the paper's layout, with the provenance of every number above it."""
    rows = list(dict.fromkeys(cells["row"]))
    columns = list(dict.fromkeys(cells["column"]))
    reasons = [status for status in dict.fromkeys(cells["status"]) if status != "done"]
    marks = {status: chr(ord("a") + i) if i < 26 else str(i) for i, status in enumerate(reasons)}
    text = {(r["row"], r["column"]): cell_text(r, tolerance, marks) for _, r in cells.iterrows()}
    read = checkpoints_read(experiment, cells, profile, substitutions)
    for _, r in cells[cells["in_warmup"]].iterrows():
        text[(r["row"], r["column"])] += f" {WARMUP_MARK}"
    flags = flagged_cells(experiment.paper, experiment.table)
    for cell, found in flags.items():  # the audit doubts the published number: marked, and said why below
        if cell in text:
            text[cell] += " ‡" if excluded(found) else " †"
    done = int(cells["ours"].notna().sum())
    units = ", ".join(sorted(set(cells["unit"])))
    tol = "" if tolerance is None else f"; ⚠ marks |ours − published| > {tolerance:g} points"
    lines = [f"# {experiment.title}", "",
             f"Profile `{profile}`; {done} of {len(cells)} cells measured; cells read 'ours (published, ours − "
             f"published)' in {units}, mean±std over seeds where there are several{tol}.",
             *[f"- {p}" for p in provenance(experiment, profile, substitutions)]]
    if experiment.notes:
        lines += ["", experiment.notes.strip()]
    lines += ["", "| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {row} | " + " | ".join(text.get((row, col), "") for col in columns) + " |" for row in rows]
    if marks:
        lines += ["", *[f"[{mark}] {status}  " for status, mark in marks.items()]]
    if read:
        lines += ["", "Checkpoints read (epochs counted from 1"
                  + (f"; {WARMUP_MARK}: read inside the method's warm-up" if cells["in_warmup"].any() else "")
                  + "):",
                  *[f"- {c.line()}" for c in read]]
    if flags:
        lines += ["", "Published values flagged by `python -m bench audit` (‡: not judged by `check`; †: shown and "
                      "judged):", *[f"- {row} | {col}: " + "; ".join(f"{f.rule}: {f.detail}" for f in found)
                                    for (row, col), found in flags.items() if (row, col) in text]]
    return "\n".join(lines) + "\n"


# Characters of the papers' labels and our cells, as LaTeX (math in \ensuremath, so two in a row stay inline).
LATEX_SYMBOLS = {"ℓ̂": r"\ensuremath{\hat{\ell}}", "ℓ∞": r"\ensuremath{\ell_\infty}", "ℓ2": r"\ensuremath{\ell_2}", "ℓ": r"\ensuremath{\ell}", "∞": r"\ensuremath{\infty}",
                 "ε": r"\ensuremath{\varepsilon}", "λ": r"\ensuremath{\lambda}", "β": r"\ensuremath{\beta}",
                 "ω": r"\ensuremath{\omega}", "μ": r"\ensuremath{\mu}", "Δ": r"\ensuremath{\Delta}",
                 "±": r"\ensuremath{\pm}", "×": r"\ensuremath{\times}", "≤": r"\ensuremath{\leq}",
                 "≥": r"\ensuremath{\geq}", "−": "-", "–": "--", "—": "---", "′": "'"}
LEVEL_SEPARATOR = " / "  # a column "Tiny-CNN / perturbation: ℓ∞ / ε = 0.1 / Clean" is a path of header levels


def _latex_escape(text: str) -> str:
    text = re.sub(r"([&%_#$])", r"\\\1", text)
    for symbol, tex in LATEX_SYMBOLS.items():
        text = text.replace(symbol, tex)
    return text


def _header_rows(columns: list[str]) -> list[str]:
    r"""booktabs header: one row per level of the column paths, a \multicolumn over each run of equal labels
    (under the same parent) and a \cmidrule under every group; the last level is one label per column."""
    paths = [col.split(LEVEL_SEPARATOR) for col in columns]
    depth = max(map(len, paths))
    paths = [[""] * (depth - len(p)) + p for p in paths]  # shallow columns hang from the bottom
    rows = []
    for level in range(depth - 1):
        cells, rules, start = [""], [], 0
        while start < len(paths):
            end = start
            while end + 1 < len(paths) and paths[end + 1][:level + 1] == paths[start][:level + 1]:
                end += 1
            label, width = paths[start][level], end - start + 1
            cells.append(rf"\multicolumn{{{width}}}{{c}}{{{_latex_escape(label)}}}" if width > 1 else _latex_escape(label))
            if label:
                rules.append(rf"\cmidrule(lr){{{start + 2}-{end + 2}}}")
            start = end + 1
        rows += [" & ".join(cells) + r" \\", " ".join(rules)]
    rows.append(" & ".join(["", *(_latex_escape(p[-1]) for p in paths)]) + r" \\")
    return [row for row in rows if row]


def to_latex(cells: pd.DataFrame) -> str:
    """The same layout as a booktabs tabular with grouped column headers: 'ours (published)' per cell, '--'
    where ours is missing; symbols are escaped for LaTeX (needs the booktabs package)."""
    rows = list(dict.fromkeys(cells["row"]))
    columns = list(dict.fromkeys(cells["column"]))
    text = {(r["row"], r["column"]): _latex_escape(("--" if math.isnan(r["ours"]) else _number(r["ours"], r["ours_std"]))
                                                   + f" ({r['published']:g})") for _, r in cells.iterrows()}
    lines = [r"% \usepackage{booktabs}", r"\begin{tabular}{l" + "c" * len(columns) + "}", r"\toprule",
             *_header_rows(columns), r"\midrule"]
    lines += [" & ".join([_latex_escape(row), *(text.get((row, col), "") for col in columns)]) + r" \\"
              for row in rows]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"


def write_table(experiment: Experiment, store: RunStore, profile: str, out_dir: Path,
                substitutions: Mapping[str, str] | None = None, tolerance: float | None = None,
                appendix: str = "") -> Path:
    """tables/<profile>/<id>.md (with `appendix`, e.g. the check's verdicts, under the table), .tex and .csv: one
    folder per profile, so a quick or smoke render never replaces a fast or paper one."""
    cells = collect(experiment, store, profile, substitutions)
    out_dir = out_dir / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{experiment.id}.md"
    atomic.write_text(path, to_markdown(experiment, cells, profile, substitutions, tolerance) + appendix)
    atomic.write_text(out_dir / f"{experiment.id}.tex", to_latex(cells))
    atomic.write_text(out_dir / f"{experiment.id}.csv", cells.to_csv(index=False))
    return path

