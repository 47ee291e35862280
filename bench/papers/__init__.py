"""The papers' content, one subpackage per paper: its runs, tables and figures (bench.papers.<paper>).

Importing this package registers every table (`table<N>_<paper>`) and figure (`fig<N>_<paper>`) in the
framework's registries (bench.experiments.base), so it is the catalogue commands read. The framework never
imports it: papers depend on bench.experiments, not the other way round.
"""
import importlib

from bench.experiments.base import EXPERIMENTS, FIGURES, lookup
from bench.published import PAPERS

for _paper in PAPERS:
    importlib.import_module(f"{__name__}.{_paper}")

__all__ = ["EXPERIMENTS", "FIGURES", "lookup"]
