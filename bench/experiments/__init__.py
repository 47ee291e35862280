"""Experiments: each table and figure of the four papers as a declared grid of runs plus its layout.

`EXPERIMENTS` maps table ids (`table<N>_<paper>`) to `Experiment`s and `FIGURES` maps figure ids
(`fig<N>_<paper>`) to `Figure`s. Each paper has one module here, named after it; importing this package
imports them, which registers their tables and figures.
"""
import importlib

from bench.experiments.base import EXPERIMENTS, FIGURES, PROFILES, Cell, Experiment, Figure, PlannedRun, lookup
from bench.published import PAPERS

for _paper in PAPERS:
    importlib.import_module(f"{__name__}.{_paper}")

__all__ = ["EXPERIMENTS", "FIGURES", "PROFILES", "Cell", "Experiment", "Figure", "PlannedRun", "lookup"]
