"""The experiment framework: what a table or figure declares (`base`), planning a grid against the run store
(`grid`), rendering (`render`), checking against the published numbers and claims (`check`, `claims`,
`stats`) and drawing (`figures`, `plotting`).

It knows no paper: the tables and figures themselves are in bench.papers, whose import fills the registries
`EXPERIMENTS` and `FIGURES` of `base` (read them through bench.papers).
"""
from bench.experiments.base import PROFILES, Cell, Experiment, Figure, PlannedRun

__all__ = ["PROFILES", "Cell", "Experiment", "Figure", "PlannedRun"]
