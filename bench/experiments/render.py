"""Tables from stored runs only: each cell's number next to the published one, with the gap, or why it is
missing (not runnable here, not run, running, crashed). Nothing is trained or evaluated here."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench import atomic
from bench.experiments.base import Experiment
from bench.published import load_published
from bench.store import RunStore

STAT_FIELD = {"acc": "acc", "worst": "worst_class_acc"}


def collect(experiment: Experiment, store: RunStore, profile: str) -> pd.DataFrame:
    """One row per cell: row, column, ours, published, diff (ours − published), status."""
    planned = {run.key: run for run in experiment.runs(profile)}
    published = load_published(experiment.paper)
    published = published[published["table"] == experiment.table].set_index(["row", "column"])["value"]
    records = []
    for cell in experiment.cells():
        run = planned[cell.run]
        ours, status = math.nan, ""
        if run.config is None:
            status = f"not runnable: {run.why}"
        else:
            run_dir = store.run_dir(run.config)
            state = run_dir.status()
            if state != "done":
                status = "not run" if state == "new" else state
            else:
                ev = run_dir.result()["checkpoints"][cell.checkpoint]["attacks"].get(cell.attack)
                if ev is None:
                    status = f"{cell.attack} not evaluated"
                else:
                    value = ev[STAT_FIELD[cell.stat]]
                    ours = 100 * (value if experiment.unit == "acc%" else 1 - value)
                    status = "done"
        pub = published.get((cell.row, cell.column), math.nan)
        records.append({"row": cell.row, "column": cell.column, "ours": ours, "published": pub,
                        "diff": ours - pub, "status": status})
    return pd.DataFrame.from_records(records)


def _text(ours: float, published: float, status: str) -> str:
    pub = "–" if math.isnan(published) else f"{published:g}"
    if status != "done":
        return f"— ({pub}) [{status}]"
    return f"{ours:.1f} ({pub}, {ours - published:+.1f})" if not math.isnan(published) else f"{ours:.1f} (–)"


def to_markdown(experiment: Experiment, cells: pd.DataFrame, profile: str) -> str:
    """A Markdown table in the paper's layout: 'ours (published, difference)' per cell, provenance on top."""
    rows = list(dict.fromkeys(cells["row"]))
    columns = list(dict.fromkeys(cells["column"]))
    text = {(r.row, r.column): _text(r.ours, r.published, r.status) for r in cells.itertuples()}
    done = int((cells["status"] == "done").sum())
    configs = [run.config for run in experiment.runs(profile) if run.config is not None]
    provenance = sorted({f"{c.epochs} epochs, seed {c.seed}, ε={c.eps}, train attack PGD-{c.attack_steps}, "
                         f"AA on {'all' if c.aa_n is None else f'the first {c.aa_n}'} test images, "
                         f"best = highest {c.select} on the first {c.eval_n} test images" for c in configs})
    lines = [f"# {experiment.title}", "",
             f"Profile `{profile}`; {done} of {len(cells)} cells measured; cells read 'ours (published, ours − "
             f"published)' in {experiment.unit}; checkpoint per cell as declared in `bench/experiments/`.",
             *[f"- {p}" for p in provenance], "",
             "| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {row} | " + " | ".join(text[(row, col)] for col in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_table(experiment: Experiment, store: RunStore, profile: str, out_dir: Path) -> Path:
    cells = collect(experiment, store, profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{experiment.id}.md"
    atomic.write_text(path, to_markdown(experiment, cells, profile))
    atomic.write_text(out_dir / f"{experiment.id}.csv", cells.to_csv(index=False))
    return path
