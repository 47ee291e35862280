"""Experiments: each table of the four papers as a declared grid of runs plus the layout of its cells.

`EXPERIMENTS` maps ids (`table<N>_<paper>`) to `Experiment`s; importing this package registers them.
"""
from bench.experiments.base import EXPERIMENTS, PROFILES, Cell, Experiment, PlannedRun
from bench.experiments import bilaw  # noqa: F401  (registration side effect)

__all__ = ["EXPERIMENTS", "PROFILES", "Cell", "Experiment", "PlannedRun"]
