"""Shared figure plumbing: one look (seaborn's paper style), PNG + PDF side by side, and a footer saying
which profile and runs produced a figure drawn from training runs."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from matplotlib.figure import Figure

from bench.experiments.base import FigureInput

MISSING_SHOWN = 3  # the footer names this many missing runs, then counts the rest


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.4) -> tuple[Figure, list]:
    """A constrained-layout figure and its axes, flattened (row-major)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def footer(fig: Figure, inputs: FigureInput) -> None:
    """Profile, datasets, epochs and seeds of the runs drawn, and what is missing, under the figure."""
    configs = [run.config() for runs in inputs.runs.values() for run in runs]
    datasets = ", ".join(sorted({c.dataset for c in configs})) or "–"
    epochs = ", ".join(str(e) for e in sorted({c.epochs for c in configs})) or "–"
    seeds = ", ".join(str(s) for s in sorted({c.seed for c in configs})) or "–"
    text = f"profile {inputs.profile}; dataset {datasets}; epochs {epochs}; seeds {seeds}"
    if inputs.missing:
        shown = ", ".join(inputs.missing[:MISSING_SHOWN])
        more = len(inputs.missing) - MISSING_SHOWN
        text += f"; missing: {shown}" + (f" and {more} more" if more > 0 else "")
    fig.supxlabel(text, fontsize=6, color="0.35")


def save(fig: Figure, path_stem: Path) -> tuple[Path, Path]:
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = path_stem.with_suffix(".png"), path_stem.with_suffix(".pdf")
    fig.savefig(png, dpi=150)
    fig.savefig(pdf)
    return png, pdf


def finished_runs(inputs: FigureInput) -> Iterator[tuple[str, object]]:
    """(key, RunDir) for every finished run, keys in plan order."""
    for key, runs in inputs.runs.items():
        for run in runs:
            yield key, run
