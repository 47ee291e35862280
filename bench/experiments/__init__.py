"""Experiments: each table of the four papers as a declared grid of runs plus the layout of its cells.

`EXPERIMENTS` maps ids (`table<N>_<paper>`) to `Experiment`s; importing this package imports every paper
module in it, which registers that paper's experiments.
"""
import importlib
import pkgutil

from bench.experiments.base import EXPERIMENTS, PROFILES, Cell, Experiment, PlannedRun

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "render"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["EXPERIMENTS", "PROFILES", "Cell", "Experiment", "PlannedRun"]
